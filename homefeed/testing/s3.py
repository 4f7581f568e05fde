"""``MotoS3Server``: a real S3 API server (moto) in a child process on loopback, for tests.

moto (``moto[server]``, a test dependency) serves the S3 HTTP API from memory: every instance
starts empty, accepts any credentials, and forgets everything when it exits. Clients talk to it
over real HTTP, exactly as they would to AWS or MinIO, so nothing in the code under test is
mocked.

There is deliberately no "skip if missing": a test that needs the server and cannot start it
fails with the reason, so a broken environment never looks like a green run.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import IO, Self

from homefeed.config import S3Config

_HOST = "127.0.0.1"
_INSTALL_HINT = "pip install 'moto[server]==5.2.5' (or pip install -e '.[test]')"
# moto's server needs these besides moto itself; [server] is the extra that brings them.
_SERVER_MODULES = ("moto", "flask", "flask_cors", "werkzeug")
TEST_CREDENTIAL = "testing"  # moto accepts any key pair


def check_moto_installed() -> None:
    """Raise ``RuntimeError`` saying what to install unless moto's server can be imported."""
    missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"the S3 tests need the moto S3 server ({', '.join(missing)} not installed): "
            + _INSTALL_HINT
        )


def _free_port() -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    # No proxies: the server is on loopback, and an HTTP_PROXY in the environment must not
    # intercept the probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(url, timeout=0.5).close()
    except urllib.error.HTTPError:
        return True  # an HTTP error status is still an answer
    except OSError:
        return False
    return True


class MotoS3Server:
    """Start moto on a free loopback port; ``with MotoS3Server() as s3: s3.endpoint_url``.

    ``start()`` returns once the server answers HTTP, or raises ``RuntimeError`` with its
    output. ``stop()`` kills the process (SIGKILL: its state is in memory, nothing to flush).
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 30.0) -> None:
        self.port = port or _free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    def s3_config(self, region: str = "us-east-1") -> S3Config:
        """An ``S3Config`` pointing at this server with throwaway credentials."""
        return S3Config(
            endpoint_url=self.endpoint_url,
            region=region,
            access_key_id=TEST_CREDENTIAL,
            secret_access_key=TEST_CREDENTIAL,
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", _HOST, "-p", str(self.port)]

    def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError("moto server already started")
        check_moto_installed()
        cmd = self.command()
        # A file, not a pipe: nobody reads the request log while the server runs, and a full
        # pipe would block it. It lives as long as the server; stop() closes it.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.start_timeout_s
        while not _answers(f"{self.endpoint_url}/moto-api/"):
            if self.process.poll() is not None:
                self._fail(f"exited with status {self.process.returncode}", cmd)
            if time.monotonic() > deadline:
                self._fail(f"did not answer HTTP within {self.start_timeout_s} s", cmd)
            time.sleep(0.05)
        return self

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode("utf-8", "replace")

    def _fail(self, why: str, cmd: list[str]) -> None:
        out = self.output()[-4000:]
        self.stop()
        raise RuntimeError(
            f"moto S3 server {why}: {' '.join(cmd)}\n--- server output ---\n{out}\n"
            f"(if moto is missing or broken: {_INSTALL_HINT})"
        )

    def stop(self) -> None:
        """Kill the server and wait for it; safe to call twice."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
