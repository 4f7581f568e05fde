"""Fast canonical event times: formatting millions of timestamps is on the simulator's hot path."""

from __future__ import annotations

import time

_last_second = -1
_last_prefix = ""


def format_ms(epoch_ms: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS.mmmZ' for epoch milliseconds (UTC); caches the current second."""
    global _last_second, _last_prefix
    second, millis = divmod(epoch_ms, 1000)
    if second != _last_second:
        _last_second = second
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_last_prefix}.{millis:03d}Z"
