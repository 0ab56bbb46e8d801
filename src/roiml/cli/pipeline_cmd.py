"""``roiml pipeline``: the daily feature pipeline, whole or one step at a time."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from roiml.cli.common import (
    JSON_OPTION,
    TENANT_OPTION,
    console,
    handle_errors,
    open_engine,
    print_json,
    progress,
    settings_or_exit,
)
from roiml.errors import PipelineError
from roiml.pipeline.step_names import STEPS

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from roiml.pipeline.steps import PipelineContext
    from roiml.settings import Settings

# Its help is in roiml.cli.main.GROUPS: `roiml --help` lists it without importing this module.
app = typer.Typer(no_args_is_help=True)


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise PipelineError(f"{option} {value!r} is not a date; use YYYY-MM-DD") from exc


def _accepted(value: str | None) -> frozenset[str]:
    from roiml.features.sources import DAILY_FLOW_TABLES

    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    unknown = names - set(DAILY_FLOW_TABLES)
    if unknown:
        raise PipelineError(
            f"--accept-arrivals {', '.join(sorted(unknown))}: not a table whose arrivals are "
            f"checked; those are: {', '.join(DAILY_FLOW_TABLES)}"
        )
    return names


def _context(
    settings: Settings,
    engine: Engine,
    tenant: str | None,
    day: date,
    on_time: bool,
    accept_arrivals: frozenset[str] = frozenset(),
) -> PipelineContext:
    from roiml.pipeline.steps import PipelineContext
    from roiml.store.online import open_online_store
    from roiml.store.retrieval import FeatureStore

    if not settings.data_dir.exists():
        raise PipelineError(
            f"data directory {settings.data_dir} does not exist; create it or set ROIML_DATA_DIR"
        )
    store = FeatureStore(
        engine, tenant or settings.tenant_id, settings.data_dir, open_online_store(settings)
    )
    return PipelineContext(store=store, day=day, on_time=on_time, accept_arrivals=accept_arrivals)


_ON_TIME = typer.Option(
    False, "--on-time", help="Values count as created on their day (replaying a history)."
)
_ACCEPT_ARRIVALS = typer.Option(
    None,
    "--accept-arrivals",
    help="TABLE[,TABLE]: the day's unusual row count of these tables is real (a holiday, an "
    "upstream change); the validate step does not fail on it.",
)


@app.command("step")
@handle_errors
def step_cmd(
    name: str = typer.Argument(..., help=f"One of: {', '.join(STEPS)}."),
    day: str = typer.Option(..., "--date", help="The day (as of its midnight), YYYY-MM-DD."),
    shard: str | None = typer.Option(
        None, "--shard", help="i/N: this worker's share (compute steps)."
    ),
    tenant: str | None = TENANT_OPTION,
    on_time: bool = _ON_TIME,
    accept_arrivals: str | None = _ACCEPT_ARRIVALS,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run one step for one day; steps hand data over through files under the data directory."""
    from roiml.pipeline.shards import parse_shard
    from roiml.pipeline.steps import run_step

    accepted = _accepted(accept_arrivals)
    settings = settings_or_exit()
    parsed_day, parsed_shard = _day(day, "--date"), parse_shard(shard)
    if name not in STEPS:
        raise PipelineError(f"unknown step {name!r}; the steps are: {', '.join(STEPS)}")
    with open_engine(settings) as engine:
        ctx = _context(settings, engine, tenant, parsed_day, on_time, accepted)
        started = time.perf_counter()
        rows = run_step(ctx, name, parsed_shard)
    seconds = time.perf_counter() - started
    if as_json:
        print_json(
            {"step": name, "date": parsed_day, "shard": shard, "rows": rows, "seconds": seconds}
        )
        return
    console.print(
        f"{name} {parsed_day}{'' if shard is None else f' shard {shard}'}: {rows} rows "
        f"in {seconds:.1f} s"
    )


@app.command("run")
@handle_errors
def run_cmd(
    day: str = typer.Option(..., "--date", help="The day (as of its midnight), YYYY-MM-DD."),
    tenant: str | None = TENANT_OPTION,
    on_time: bool = _ON_TIME,
    accept_arrivals: str | None = _ACCEPT_ARRIVALS,
    as_json: bool = JSON_OPTION,
) -> None:
    """Every step for one day: extract, compute, validate, store, update statistics."""
    from roiml.pipeline.steps import run_day

    accepted = _accepted(accept_arrivals)
    settings = settings_or_exit()
    parsed_day = _day(day, "--date")
    with open_engine(settings) as engine:
        ctx = _context(settings, engine, tenant, parsed_day, on_time, accepted)
        started = time.perf_counter()
        with progress(f"pipeline {parsed_day}", quiet=as_json) as report:
            rows = run_day(ctx, on_step=report)
    seconds = time.perf_counter() - started
    if as_json:
        print_json({"date": parsed_day, "rows": rows, "seconds": seconds})
        return
    console.print(f"{day}: {rows} in {seconds:.1f} s")


@app.command("backfill")
@handle_errors
def backfill_cmd(
    start: str = typer.Option(..., "--start", help="First day, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last day, inclusive (YYYY-MM-DD)."),
    tenant: str | None = TENANT_OPTION,
    on_time: bool = _ON_TIME,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run the pipeline for every day from --start to --end (both included), in order."""
    from roiml.pipeline.steps import run_day

    settings = settings_or_exit()
    first, last = _day(start, "--start"), _day(end, "--end")
    if last < first:
        raise PipelineError(f"--end {last} is before --start {first}")
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    done: list[dict[str, object]] = []
    with open_engine(settings) as engine, progress("backfill", len(days), quiet=as_json) as report:
        for index, day in enumerate(days):
            started = time.perf_counter()
            report(f"{day}", index, len(days))

            def day_step(
                step: str, _done: int, _total: int, day: date = day, at: int = index
            ) -> None:
                report(f"{day} {step}", at, len(days))

            rows = run_day(_context(settings, engine, tenant, day, on_time), on_step=day_step)
            seconds = time.perf_counter() - started
            done.append({"date": day, "rows": rows, "seconds": seconds})
            if not as_json:
                # Each day as it ends (printed above the transient bar, which rich redirects).
                console.print(f"{day}: done in {seconds:.1f} s")
    if as_json:
        print_json({"start": first, "end": last, "days": done})


@app.command("status")
@handle_errors
def status_cmd(
    tenant: str | None = TENANT_OPTION,
    limit: int = typer.Option(30, "--limit", min=1, help="How many of the latest steps."),
    as_json: bool = JSON_OPTION,
) -> None:
    """The latest recorded steps: day, step, shard, start, end, rows, outcome."""
    from roiml.pipeline.runs import list_runs

    settings = settings_or_exit()
    tenant_id = tenant or settings.tenant_id
    with open_engine(settings) as engine:
        runs = list_runs(engine, tenant_id, limit)
    if as_json:
        print_json(
            [
                {
                    "day": f"{run.run_date:%Y-%m-%d}",
                    "step": run.step,
                    "shard": run.shard,
                    "started_at": run.started_at,
                    "ended_at": run.ended_at,
                    "rows": run.rows,
                    "outcome": run.outcome,
                    "message": run.message,
                }
                for run in runs
            ]
        )
        return
    if not runs:
        # The demo materializes its two days directly, not through the pipeline's steps.
        console.print(
            f"no pipeline run is recorded for tenant {tenant_id!r}; `roiml pipeline run --date "
            "YYYY-MM-DD` runs one (the demo computes its features without the pipeline)"
        )
        return
    table = Table()
    for column in ("day", "step", "shard", "started", "seconds", "rows", "outcome", "message"):
        table.add_column(column)
    for run in runs:
        seconds = f"{(run.ended_at - run.started_at).total_seconds():.1f}" if run.ended_at else ""
        table.add_row(
            f"{run.run_date:%Y-%m-%d}",
            run.step,
            run.shard or "",
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            seconds,
            "" if run.rows is None else f"{run.rows:,}",
            run.outcome,
            (run.message or "")[:80],
        )
    console.print(table)
