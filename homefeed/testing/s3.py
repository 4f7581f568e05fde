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
import sys
import urllib.error
import urllib.request

from homefeed.config import S3Config
from homefeed.testing.process import HOST, ServerProcess

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


class MotoS3Server(ServerProcess):
    """Start moto on a free loopback port; ``with MotoS3Server() as s3: s3.endpoint_url``.

    ``start()`` returns once the server answers HTTP, or raises ``RuntimeError`` with its
    output. ``stop()`` kills the process (SIGKILL: its state is in memory, nothing to flush).
    """

    label = "moto S3 server"
    hint = f"if moto is missing or broken: {_INSTALL_HINT}"

    def __init__(self, port: int | None = None, start_timeout_s: float = 30.0) -> None:
        super().__init__(port, start_timeout_s)

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def s3_config(self, region: str = "us-east-1") -> S3Config:
        """An ``S3Config`` pointing at this server with throwaway credentials."""
        return S3Config(
            endpoint_url=self.endpoint_url,
            region=region,
            access_key_id=TEST_CREDENTIAL,
            secret_access_key=TEST_CREDENTIAL,
        )

    def command(self) -> list[str]:
        check_moto_installed()
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    def ready(self) -> bool:
        return _answers(f"{self.endpoint_url}/moto-api/")
