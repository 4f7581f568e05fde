#!/usr/bin/env python3
"""Container health checks for homefeed processes (installed as ``homefeed-healthcheck``).

    homefeed-healthcheck http URL        the URL answers 2xx (the feed service's /healthz)
    homefeed-healthcheck tcp HOST:PORT   something accepts connections (the Thrift ranker)
    homefeed-healthcheck deps            what the config (homefeed.toml + HOMEFEED_* env)
                                         points at is reachable: Kafka brokers, the S3
                                         endpoint, Redis; the persister and jobs have no port

Exit 0 when healthy, 1 with a one-line reason on stderr otherwise (Docker keeps the output).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 3.0


def check_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = int(response.status)
    except (urllib.error.URLError, OSError) as e:
        return f"{url}: {e}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def check_tcp(address: str) -> str | None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=TIMEOUT_S):
            return None
    except (OSError, ValueError) as e:
        return f"{address}: {e}"


def dependencies() -> list[str]:
    """host:port of every server the loaded config needs."""
    from homefeed.config import load_config

    config = load_config()
    found = []
    if config.log.backend == "kafka":
        found += [s.strip() for s in config.log.kafka.bootstrap_servers.split(",") if s.strip()]
    if config.lake.uri.startswith("s3://") and config.lake.s3.endpoint_url:
        found.append(_host_port(config.lake.s3.endpoint_url, 443))
    online = getattr(getattr(config, "serving", None), "online", None)
    if online is not None and online.backend == "redis":
        found.append(_host_port(online.redis_url, 6379))
    return found


def _host_port(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    port = parts.port or (80 if parts.scheme == "http" else default_port)
    return f"{parts.hostname}:{port}"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        problems = [check_http(argv[1])]
    elif len(argv) == 2 and argv[0] == "tcp":
        problems = [check_tcp(argv[1])]
    elif argv == ["deps"]:
        problems = [check_tcp(a) for a in dependencies()]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    failed = [p for p in problems if p is not None]
    for p in failed:
        print(f"unhealthy: {p}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
