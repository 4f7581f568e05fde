"""`homefeed serve` (the feed service) and `homefeed ranker serve` (the Thrift ranking service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from homefeed.cli.common import settings

ranker_app = typer.Typer(help="The ranking service (Thrift).", no_args_is_help=True)


@ranker_app.command("serve")
def ranker_serve(
    bundle: Annotated[Path, typer.Argument(help="A model bundle directory.", exists=True)],
    host: Annotated[str | None, typer.Option(help="Bind address; default from config.")] = None,
    port: Annotated[int | None, typer.Option(help="Port; default from config.")] = None,
) -> None:
    """Serve a model bundle's ranker over Thrift; SIGHUP reloads the bundle."""
    from homefeed.serving.ranking.service import serve

    cfg = settings.config.serving.ranker
    serve(host or cfg.host, port or cfg.port, bundle)
