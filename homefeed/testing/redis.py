"""``RedisServer``: a real redis-server in a child process, for tests and demos.

It keeps everything in memory (no RDB snapshot, no AOF), so each instance starts empty.
There is deliberately no "skip if missing": a test that needs Redis and cannot start it
fails with the reason (install redis-server: ``apt-get install redis-server``).
"""

from __future__ import annotations

import shutil

from homefeed.testing.process import HOST, ServerProcess


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "the Redis tests need redis-server on PATH: apt-get install redis-server "
            "(or brew install redis)"
        )
    return path


class RedisServer(ServerProcess):
    """``with RedisServer() as r: r.url``; ``start()`` returns once the server answers PING."""

    label = "redis-server"
    hint = "apt-get install redis-server"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_binary(),
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
        ]  # fmt: skip

    def ready(self) -> bool:
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.2)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()
