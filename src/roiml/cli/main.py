"""The ``roiml`` command line: one verb per arrow of the data flow."""

from __future__ import annotations

import typer

from roiml.cli import (
    data_cmd,
    db_cmd,
    demo_cmd,
    features_cmd,
    models_cmd,
    monitor_cmd,
    pipeline_cmd,
    serve_cmd,
    train_cmd,
    tune_cmd,
    world_cmd,
)

app = typer.Typer(
    name="roiml",
    help="roiml: point-in-time features, four models, explained serving and monitoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmd.app, name="db")
app.add_typer(world_cmd.app, name="world")
app.add_typer(data_cmd.app, name="data")
app.add_typer(features_cmd.app, name="features")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.add_typer(models_cmd.app, name="models")
app.add_typer(monitor_cmd.app, name="monitor")
app.command("train")(train_cmd.train)
app.command("tune")(tune_cmd.tune)
app.command("serve")(serve_cmd.serve)
app.command("demo")(demo_cmd.demo)


if __name__ == "__main__":  # pragma: no cover
    app()
