"""The ``homefeed`` command. Commands parse, call one function below the CLI, and format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from homefeed.cli import (
    demo,
    deploy,
    events,
    experiments,
    jobs,
    lake,
    log,
    models,
    models_eval,
    pipeline,
    serving,
    sql,
)
from homefeed.cli.common import settings, setup_logging
from homefeed.serving.api.cli import serve

app = typer.Typer(
    help="homefeed: a home-feed ML pipeline from logged events to ranked feeds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(events.schemas_app, name="schemas")
app.add_typer(events.events_app, name="events")
app.add_typer(log.topics_app, name="topics")
app.add_typer(lake.lake_app, name="lake")
app.add_typer(pipeline.import_app, name="import")
app.command("init")(pipeline.init)
app.command("persist")(pipeline.persist)
app.command("simulate")(pipeline.simulate)
app.command("demo")(demo.demo)
app.command("sql")(sql.sql)
app.command("tables")(sql.tables)
app.add_typer(jobs.run_app, name="run")
app.command("backfill")(jobs.backfill)
app.command("jobs")(jobs.jobs)
lake.lake_app.command("gc")(jobs.gc)
app.add_typer(experiments.experiments_app, name="experiments")
app.command("serve")(serve)
app.command("train")(models.train)
app.add_typer(models.models_app, name="models")
app.add_typer(models_eval.eval_app, name="eval")
app.add_typer(serving.ranker_app, name="ranker")
app.add_typer(deploy.deploy_app, name="deploy")


@app.callback()
def root(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: ./homefeed.toml if present).",
            envvar="HOMEFEED_CONFIG",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    settings.config_path = config
    settings.reset()
    setup_logging(verbose)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
