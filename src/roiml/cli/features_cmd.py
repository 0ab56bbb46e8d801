"""``roiml features``: the catalog, computation, backfills and the store's housekeeping.

The engine, validation and the store (DuckDB, Arrow, SQLAlchemy) are imported inside each verb:
`roiml --help` imports this module and must not load them.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    aliases,
    console,
    err_console,
    handle_errors,
    open_engine,
    print_json,
    progress,
    settings_or_exit,
)
from roiml.errors import FeatureError
from roiml.features.catalog import CATALOG

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from roiml.settings import Settings
    from roiml.store.retrieval import FeatureStore

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)

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
        raise FeatureError(f"--date {value!r} is not a date or timestamp (ISO-8601)") from exc


# --as-of was the day's name in these verbs before issue 21 gave every verb --date.
_AS_OF = aliases({"--as-of": "--date"})
_FEATURES_HELP = "Comma-separated features or feature sets (default: every set)."


def _sets(value: str) -> list[str]:
    return CATALOG.expand([item.strip() for item in value.split(",") if item.strip()])


@app.command("catalog")
@handle_errors
def catalog_cmd(
    output: Path = typer.Option(DEFAULT_CATALOG, "--output", help="Where to write the catalog."),
    check: bool = typer.Option(False, "--check", help="Only check the file is up to date."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate docs/FEATURE_CATALOG.md from the definitions (or --check it is current)."""
    from roiml.features.catalog_doc import render_catalog

    text = render_catalog()
    counts = {"features": len(CATALOG.features), "feature_sets": len(CATALOG.feature_sets)}
    if check:
        current = output.exists() and output.read_text() == text
        if as_json:
            print_json({"output": str(output), "up_to_date": current, **counts})
        elif current:
            console.print(f"{output} is up to date ({len(CATALOG.features)} features)")
        if not current:
            err_console.print(f"{output} is stale; run `roiml features catalog`")
            raise typer.Exit(1)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    if as_json:
        print_json({"output": str(output), "written": True, **counts})
        return
    console.print(
        f"wrote {output}: {len(CATALOG.features)} features in {len(CATALOG.feature_sets)} sets"
    )


@app.command("list")
def list_cmd(
    feature_set: str | None = typer.Option(None, "--set", help="Only this feature set."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the features (name, set, type, window, description)."""
    chosen = [
        feature
        for feature in CATALOG.features.values()
        if not feature_set or feature.feature_set == feature_set.lower()
    ]
    if as_json:
        print_json(
            [
                {
                    "feature": f.name,
                    "set": f.feature_set,
                    "type": f.dtype.value,
                    "window_days": f.window_days,
                    "description": f.description,
                }
                for f in chosen
            ]
        )
        return
    table = Table()
    for column in ("feature", "set", "type", "window", "description"):
        table.add_column(column)
    for feature in chosen:
        window = f"{feature.window_days}d" if feature.window_days else ""
        table.add_row(
            feature.name, feature.feature_set, feature.dtype.value, window, feature.description
        )
    console.print(table)


@app.command("compute", cls=_AS_OF)
@handle_errors
def compute_cmd(
    entity: list[str] = typer.Option(
        [], "--entity", help="Entity id (repeatable); default all users."
    ),
    features: str = typer.Option(
        ",".join(CATALOG.feature_sets), "--features", help=_FEATURES_HELP, show_default=False
    ),
    as_of: str | None = typer.Option(
        None,
        "--date",
        help="The day (as of its midnight, YYYY-MM-DD) or an ISO timestamp (default: now).",
    ),
    tenant: str | None = TENANT_OPTION,
    output: Path | None = typer.Option(
        None, "--output", help="Write the frame (.parquet/.csv/.json)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compute features as of one instant, print them (one entity) or write a file."""
    from roiml.features.engineer import FeatureEngineer
    from roiml.features.validation import validate_frame
    from roiml.store.export import export_frame

    settings = settings_or_exit()
    names = _sets(features)
    tenant_id = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        if entity:
            _check_entities(engine, tenant_id, entity)
        engineer = FeatureEngineer(engine, tenant_id)
        frame = engineer.compute_batch(names, entity or None, _moment(as_of))
    if output is not None:
        export_frame(frame, output)
        if as_json:
            print_json({"output": str(output), "rows": frame.num_rows, "features": len(names)})
            return
        console.print(f"wrote {frame.num_rows} rows x {len(names)} features to {output}")
    elif as_json:
        print_json(frame.to_pylist())
    elif frame.num_rows == 1:
        console.print_json(json.dumps(frame.to_pylist()[0], default=str))
    elif frame.num_rows <= _SIDE_BY_SIDE:
        console.print(_side_by_side(frame.to_pylist()))
    else:
        console.print(validate_frame(frame).render())
        console.print(f"{frame.num_rows} rows; pass --output to keep them")


@app.command("online")
@handle_errors
def online_cmd(
    entity: list[str] = typer.Option(..., "--entity", help="Homeowner id (repeatable, up to 100)."),
    feature_set: list[str] = typer.Option(
        [], "--feature-set", help="A feature set to read (repeatable); default every set."
    ),
    tenant: str | None = TENANT_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """What the online store holds for these homeowners, per feature set, and how old it is.

    Feast's online read: no fallback to the warm store or to computing (a set the store holds
    none fresh of is shown missing), the same read as POST /v1/features/online.
    """
    from roiml.serving.components import serving_clock

    settings = settings_or_exit()
    # "Now" as the API reads it: a pinned ROIML_TODAY (a demo, a replay) judges freshness then.
    now = serving_clock(settings)()
    with open_engine(settings) as engine:
        store = _feature_store(settings, engine, tenant)
        try:
            read = store.get_online_features(entity, feature_set or None, now=now)
        finally:
            store.online.close()
    unknown = [r.entity_id for r in read if not r.known]
    if as_json:
        print_json(
            [
                {
                    "entity_id": r.entity_id,
                    "known": r.known,
                    "feature_sets": {
                        name: None
                        if found is None
                        else {
                            "as_of": found.as_of.isoformat(),
                            "age_seconds": found.age_seconds,
                            "features": found.values,
                        }
                        for name, found in r.sets.items()
                    },
                }
                for r in read
            ]
        )
    else:
        for r in read:
            table = Table(title=f"{r.entity_id}", title_justify="left")
            for column in ("feature set", "as of", "age", "values"):
                table.add_column(column)
            for name, found in r.sets.items():
                if found is None:
                    table.add_row(name, "-", "-", "not in the online store (missing or expired)")
                    continue
                shown = ", ".join(
                    f"{k}={v:g}" if v is not None else f"{k}=null"
                    for k, v in list(found.values.items())[:4]
                )
                more = len(found.values) - 4
                table.add_row(
                    name,
                    found.as_of.isoformat(sep=" "),
                    f"{found.age_seconds / 3600:.1f} h",
                    shown + (f" (+{more} more; --json for all)" if more > 0 else ""),
                )
            if r.known:
                console.print(table)
    if unknown:
        raise _not_users(unknown, tenant or settings.tenant_id)


# Up to this many entities are printed side by side, a column each; more go to --output.
_SIDE_BY_SIDE = 10


def _side_by_side(rows: list[dict[str, object]]) -> Table:
    """A feature per line, an entity per column (their as-of in the header)."""
    table = Table(show_edge=False)
    table.add_column("feature")
    for row in rows:
        table.add_column(f"{row['entity_id']}\n{row['as_of']}", justify="right")
    for name in [k for k in rows[0] if k not in ("entity_id", "as_of")]:
        table.add_row(name, *("null" if r[name] is None else f"{r[name]:g}" for r in rows))
    return table


def _check_entities(engine: Engine, tenant: str, entities: list[str]) -> None:
    """FeatureError naming the ids that are no user of ``tenant`` (the engine would compute
    zeros and nulls for them, as for a homeowner with no activity; the API answers 404)."""
    from roiml.store.vectors import known_users

    known = known_users(engine, tenant, entities)
    unknown = [e for e in dict.fromkeys(entities) if e not in known]
    if unknown:
        raise _not_users(unknown, tenant)


def _not_users(unknown: list[str], tenant: str) -> FeatureError:
    """The error naming ids that are no user of ``tenant`` (the first five, and how many
    more)."""
    shown = ", ".join(repr(e) for e in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return FeatureError(
        f"{shown}{more} is not a user of tenant {tenant!r}; check the id "
        "(--tenant names another tenant)"
    )


@app.command("backfill")
@handle_errors
def backfill_cmd(
    start: str = typer.Option(..., "--start", help="First as-of day (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--end", help="Last as-of day, inclusive (YYYY-MM-DD)."),
    features: str = typer.Option(
        ",".join(CATALOG.feature_sets), "--features", help=_FEATURES_HELP, show_default=False
    ),
    entity: list[str] = typer.Option([], "--entity", help="Entity id (repeatable); default all."),
    tenant: str | None = TENANT_OPTION,
    output: Path = typer.Option(..., "--output", help="File for the frame (.parquet/.csv/.json)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Features as of every midnight from --start to --end (both included), for many entities."""
    from roiml.features.engineer import FeatureEngineer
    from roiml.store.export import export_frame

    settings = settings_or_exit()
    first, last = _date(start, "--start"), _date(end, "--end")
    if last < first:
        raise FeatureError(f"--end {last} is before --start {first}")
    with (
        open_engine(settings) as engine,
        progress("backfill", (last - first).days + 1, quiet=as_json) as report,
    ):
        engineer = FeatureEngineer(engine, tenant or settings.tenant_id)
        frame = engineer.backfill_features(
            _sets(features), entity or None, first, last, on_days=report
        )
    export_frame(frame, output)
    if as_json:
        print_json({"output": str(output), "rows": frame.num_rows, "start": first, "end": last})
        return
    console.print(f"wrote {frame.num_rows} rows to {output}")


@app.command("sync", cls=_AS_OF)
@handle_errors
def sync_cmd(
    tenant: str | None = TENANT_OPTION,
    as_of: str | None = typer.Option(
        None,
        "--date",
        help="Compute the statistics as of this day (YYYY-MM-DD) or ISO timestamp (default: now).",
    ),
    statistics: bool = typer.Option(
        True, "--statistics/--no-statistics", help="Also compute each feature's statistics."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write every definition (and its statistics over all users) into ml_features."""
    from roiml.features.engineer import FeatureEngineer
    from roiml.features.summary import feature_statistics, sync_feature_definitions

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
    if as_json:
        print_json({"tenant": tenant_id, "synced": count, "statistics": statistics})
        return
    console.print(f"synced {count} feature definitions into ml_features for tenant {tenant_id!r}")


def _feature_store(settings: Settings, engine: Engine, tenant: str | None) -> FeatureStore:
    from roiml.store.online import open_online_store
    from roiml.store.retrieval import FeatureStore

    return FeatureStore(
        engine, tenant or settings.tenant_id, settings.data_dir, open_online_store(settings)
    )


@app.command("materialize")
@handle_errors
def materialize_cmd(
    day: str = typer.Option(..., "--date", help="Day to compute, as of its midnight (YYYY-MM-DD)."),
    tenant: str | None = TENANT_OPTION,
    on_time: bool = typer.Option(
        False, "--on-time", help="Count the values as created that day (replaying a history)."
    ),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Quality gates."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compute every feature set for every user as of --date and store it cold, warm and hot.

    The day is stored only if it passes validation; otherwise the report names each failed rule
    and nothing is written.
    """
    from roiml.store.materialize import materialize_day

    settings = settings_or_exit()
    as_of = _date(day, "--date")
    with open_engine(settings) as engine:
        store = _feature_store(settings, engine, tenant)
        try:
            with progress(f"materialize {as_of}", quiet=as_json) as report:
                result = materialize_day(
                    store, as_of, validate=validate, on_time=on_time, on_step=report
                )
        finally:
            store.online.close()
    if as_json:
        print_json(
            {
                "date": as_of,
                "rows": result.rows,
                "passed": result.report.passed,
                "validation": asdict(result.report),
                "stored": result.stored,
            }
        )
        return
    console.print(
        f"{as_of}: {result.rows:,} rows; {result.report.render()}; stored {result.stored}"
    )


@app.command("prune")
@handle_errors
def prune_cmd(
    tenant: str | None = TENANT_OPTION,
    keep_days: int = typer.Option(30, "--keep-days", min=1, help="Days the warm tier keeps."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Move warm rows older than --keep-days out of the SQL store (cold keeps every day)."""
    from roiml.store.warm import prune

    settings = settings_or_exit()
    with open_engine(settings) as engine:
        result = prune(
            engine, tenant or settings.tenant_id, data_dir=settings.data_dir, keep_days=keep_days
        )
    if as_json:
        print_json(asdict(result))
        return
    console.print(
        f"pruned {result.deleted:,} warm rows ({result.copied_to_cold:,} first copied to cold)"
    )


@app.command("training-set", cls=aliases({"--feature-sets": "--features"}))
@handle_errors
def training_set_cmd(
    entities: Path = typer.Option(
        ..., "--entities", help="Parquet/CSV with entity_id and event_timestamp (+ any labels)."
    ),
    output: Path = typer.Option(..., "--output", help="Where to write (.parquet/.csv/.json)."),
    features: str = typer.Option(
        ",".join(CATALOG.feature_sets),
        "--features",
        help="Comma-separated feature sets (whole sets: the cold store keeps each set's vectors; "
        "default: every set).",
        show_default=False,
    ),
    tenant: str | None = TENANT_OPTION,
    include_late: bool = typer.Option(
        False, "--include-late", help="Also use values created after each row's timestamp."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Point-in-time training set from the cold store for an entity file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from roiml.store.export import export_frame

    if not entities.exists():
        raise FeatureError(f"entity file {entities} does not exist")
    frame = pq.read_table(entities) if entities.suffix == ".parquet" else pacsv.read_csv(entities)
    sets = [s.strip() for s in features.split(",") if s.strip()]
    settings = settings_or_exit()
    with open_engine(settings) as engine:
        store = _feature_store(settings, engine, tenant)
        try:
            dataset = store.create_training_dataset(
                entity_frame=frame, feature_sets=sets, only_known_at_event_time=not include_late
            )
        finally:
            store.online.close()
    export_frame(dataset, output)
    if as_json:
        print_json(
            {"output": str(output), "rows": dataset.num_rows, "columns": dataset.num_columns}
        )
        return
    console.print(f"wrote {dataset.num_rows:,} rows x {dataset.num_columns} columns to {output}")
