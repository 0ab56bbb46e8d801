"""``roiml features``: the catalog, computation, backfills and the store's housekeeping."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import typer
from rich.table import Table

from roiml.cli.common import console, err_console, handle_errors, open_engine, settings_or_exit
from roiml.errors import FeatureError
from roiml.features.api import FeatureEngineer
from roiml.features.catalog import CATALOG
from roiml.features.catalog_doc import render_catalog
from roiml.features.statistics import feature_statistics, sync_feature_definitions
from roiml.features.validation import validate_frame

app = typer.Typer(help="Feature catalog, computation and backfills.", no_args_is_help=True)

DEFAULT_CATALOG = Path("docs/FEATURE_CATALOG.md")


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise FeatureError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from exc


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise FeatureError(f"--as-of {value!r} is not a date or timestamp (ISO-8601)") from exc


def _sets(value: str) -> list[str]:
    return CATALOG.expand([item.strip() for item in value.split(",") if item.strip()])


@app.command("catalog")
@handle_errors
def catalog_cmd(
    output: Path = typer.Option(DEFAULT_CATALOG, "--output", help="Where to write the catalog."),
    check: bool = typer.Option(False, "--check", help="Only check the file is up to date."),
) -> None:
    """Generate docs/FEATURE_CATALOG.md from the definitions (or --check it is current)."""
    text = render_catalog()
    if check:
        if not output.exists() or output.read_text() != text:
            err_console.print(f"{output} is stale; run `roiml features catalog`")
            raise typer.Exit(1)
        console.print(f"{output} is up to date ({len(CATALOG.features)} features)")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    console.print(
        f"wrote {output}: {len(CATALOG.features)} features in {len(CATALOG.feature_sets)} sets"
    )


@app.command("list")
def list_cmd(
    feature_set: str | None = typer.Option(None, "--set", help="Only this feature set."),
) -> None:
    """List the features (name, set, type, window, description)."""
    table = Table()
    for column in ("feature", "set", "type", "window", "description"):
        table.add_column(column)
    for feature in CATALOG.features.values():
        if feature_set and feature.feature_set != feature_set.lower():
            continue
        window = f"{feature.window_days}d" if feature.window_days else ""
        table.add_row(
            feature.name, feature.feature_set, feature.dtype.value, window, feature.description
        )
    console.print(table)


@app.command("compute")
@handle_errors
def compute_cmd(
    entity: list[str] = typer.Option(
        [], "--entity", help="Entity id (repeatable); default all users."
    ),
    features: str = typer.Option(
        ",".join(CATALOG.feature_sets),
        "--features",
        help="Comma-separated features or feature sets.",
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="As-of date or timestamp (default now)."
    ),
    tenant: str | None = typer.Option(
        None, "--tenant", help="Tenant id (default ROIML_TENANT_ID)."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Write the frame (.parquet/.csv/.json)."
    ),
) -> None:
    """Compute features as of one instant, print them (one entity) or write a file."""
    settings = settings_or_exit()
    names = _sets(features)
    with open_engine(settings) as engine:
        engineer = FeatureEngineer(engine, tenant or settings.tenant_id)
        frame = engineer.compute_batch(names, entity or None, _moment(as_of))
    if output is not None:
        from roiml.store.export import export_frame

        export_frame(frame, output)
        console.print(f"wrote {frame.num_rows} rows x {len(names)} features to {output}")
    elif frame.num_rows == 1:
        console.print_json(json.dumps(frame.to_pylist()[0], default=str))
    else:
        console.print(validate_frame(frame).render())
        console.print(f"{frame.num_rows} rows; pass --output to keep them")


@app.command("backfill")
@handle_errors
def backfill_cmd(
    start: str = typer.Option(..., "--start", help="First as-of date (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--end", help="Last as-of date, inclusive."),
    features: str = typer.Option(",".join(CATALOG.feature_sets), "--features"),
    entity: list[str] = typer.Option([], "--entity", help="Entity id (repeatable); default all."),
    tenant: str | None = typer.Option(None, "--tenant"),
    output: Path = typer.Option(..., "--output", help="File for the frame (.parquet/.csv/.json)."),
) -> None:
    """Features as of every midnight from --start to --end, for many entities."""
    settings = settings_or_exit()
    with open_engine(settings) as engine:
        engineer = FeatureEngineer(engine, tenant or settings.tenant_id)
        frame = engineer.backfill_features(
            _sets(features), entity or None, _date(start, "--start"), _date(end, "--end")
        )
    from roiml.store.export import export_frame

    export_frame(frame, output)
    console.print(f"wrote {frame.num_rows} rows to {output}")


@app.command("sync")
@handle_errors
def sync_cmd(
    tenant: str | None = typer.Option(None, "--tenant"),
    as_of: str | None = typer.Option(None, "--as-of", help="Compute statistics as of this date."),
    statistics: bool = typer.Option(True, "--statistics/--no-statistics"),
) -> None:
    """Write every definition (and its statistics over all users) into ml_features."""
    settings = settings_or_exit()
    tenant_id = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        stats = None
        if statistics:
            frame = FeatureEngineer(engine, tenant_id).compute_batch(
                list(CATALOG.features), None, _moment(as_of)
            )
            stats = feature_statistics(frame)
        count = sync_feature_definitions(engine, tenant_id, stats)
    console.print(f"synced {count} feature definitions into ml_features for tenant {tenant_id!r}")
