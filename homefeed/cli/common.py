"""What every command shares: the loaded config, opened backends, and error reporting."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from homefeed.config import ConfigError, HomefeedConfig, load_config

if TYPE_CHECKING:
    from homefeed.lake.base import LakeStore
    from homefeed.log.base import EventLog

console = Console()
err_console = Console(stderr=True)


@dataclass
class Settings:
    config_path: Path | None = None
    _config: HomefeedConfig | None = field(default=None, repr=False)

    def reset(self) -> None:
        """Forget the loaded config, so the next command reads the file and environment anew."""
        self._config = None

    @property
    def config(self) -> HomefeedConfig:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as e:
                fail(str(e))
                raise  # unreachable: fail() exits
        return self._config


settings = Settings()


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def opened_log() -> Iterator[EventLog]:
    from homefeed.log import open_log

    event_log = open_log(settings.config.log)
    try:
        yield event_log
    finally:
        event_log.close()


def open_lake_store() -> LakeStore:
    from homefeed.lake import open_lake

    return open_lake(settings.config.lake)


def retention_ms() -> int:
    return int(settings.config.log.retention_hours * 3600 * 1000)
