"""A server in a child process on a free loopback port: the shared part of the test servers.

Subclasses say how to run the server (``command``) and how to tell it is up (``ready``).
There is deliberately no "skip if missing": a server that cannot start fails with its reason
and output, so a broken environment never looks like a green run.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import IO, Self

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    label = "server"
    hint = ""  # appended to start failures: what to install or check

    def __init__(self, port: int | None = None, start_timeout_s: float = 20.0) -> None:
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def ready(self) -> bool:
        """Whether the server answers; called until it does or the start times out."""
        raise NotImplementedError

    def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError(f"{self.label} already started")
        cmd = self.command()
        # A file, not a pipe: nobody reads the server's log while it runs, and a full pipe
        # would block it. It lives as long as the server; stop() closes it.
        self._output = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT,
            env=self.env(),
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.process.poll() is not None:
                self._fail(f"exited with status {self.process.returncode}", cmd)
            if self.ready():
                return self
            if time.monotonic() > deadline:
                self._fail(f"did not answer within {self.start_timeout_s} s", cmd)
            time.sleep(0.05)

    def output(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode("utf-8", "replace")

    def _fail(self, why: str, cmd: list[str]) -> None:
        out = self.output()[-4000:]
        self.stop()
        hint = f"\n({self.hint})" if self.hint else ""
        raise RuntimeError(
            f"{self.label} {why}: {' '.join(cmd)}\n--- {self.label} output ---\n{out}{hint}"
        )

    def stop(self) -> None:
        """Kill the server (SIGKILL: its state is in memory) and wait; safe to call twice."""
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
