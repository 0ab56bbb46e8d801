"""``roiml monitor``: drift, realised and estimated performance, and alerts, per model and day."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, timedelta

import typer
from rich.markup import escape
from rich.table import Table

from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    aliases,
    console,
    handle_errors,
    open_engine,
    print_json,
    settings_or_exit,
)
from roiml.errors import ConfigurationError

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)


def _period(value: str | None, today: date) -> date:
    if value is None:
        return today - timedelta(days=1)  # yesterday by the product's clock
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigurationError(f"--date {value!r} is not a date; use YYYY-MM-DD") from exc


# --period was the day's name here before issue 21 gave every verb --date.
@app.command("run", cls=aliases({"--period": "--date"}))
@handle_errors
def run_cmd(
    period: str | None = typer.Option(
        None,
        "--date",
        help="The day to monitor, YYYY-MM-DD (default: yesterday by ROIML_TODAY, else UTC).",
    ),
    tenant: str | None = TENANT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write one ml_monitoring row per model version for the day (a rerun replaces them).

    Exits 0 whatever the models' health: drift and decay are findings, written to the rows,
    the log and the webhook; a failure of the job itself exits non-zero.
    """
    from roiml.monitoring.job import run_monitoring  # NumPy/SciPy only when monitoring

    settings = settings_or_exit()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    day = _period(period, settings.current_date())
    with open_engine(settings) as engine:
        results = run_monitoring(settings, engine, tenant or settings.tenant_id, day)
    if as_json:
        print_json([asdict(r) for r in results])
        return
    table = Table(title=f"monitoring {day.isoformat()}")
    for column in ("model", "version", "status", "predictions", "drifted", "decayed", "alerts"):
        table.add_column(column)
    for r in results:
        drifted = ", ".join(r.drifted_features[:5]) + (
            " ..." if len(r.drifted_features) > 5 else ""
        )
        table.add_row(
            r.model_name,
            r.model_version,
            r.status,
            str(r.prediction_count),
            escape(drifted or "-"),
            escape(", ".join(r.decayed_metrics) or "-"),
            str(len(r.alerts)),
        )
    console.print(table)
    if not results:
        console.print("no registered models for this tenant: nothing to monitor")


@app.command("archive-predictions")
@handle_errors
def archive_predictions_cmd(
    keep_days: int | None = typer.Option(
        None,
        "--keep-days",
        help="Days of predictions ml_predictions keeps (default 400); never fewer than the "
        "longest prediction horizon.",
    ),
    tenant: str | None = TENANT_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would move; change nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Move predictions older than --keep-days (whole days) from ml_predictions to Parquet under
    <data_dir>/predictions/archive. Safe to rerun: nothing is archived twice or lost."""
    from roiml.monitoring.archive import DEFAULT_KEEP_DAYS, archive_dir, archive_predictions

    settings = settings_or_exit()
    name = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        result = archive_predictions(
            engine,
            name,
            data_dir=settings.data_dir,
            keep_days=DEFAULT_KEEP_DAYS if keep_days is None else keep_days,
            dry_run=dry_run,
        )
    if as_json:
        print_json({**asdict(result), "archive_dir": str(archive_dir(settings.data_dir, name))})
        return
    verb = "would move" if result.dry_run else "moved"
    console.print(
        f"{verb} {result.deleted:,} predictions made before {result.cutoff:%Y-%m-%d} "
        f"({result.partitions} model-days; {result.archived:,} written to "
        f"{escape(str(archive_dir(settings.data_dir, name)))})"
    )
