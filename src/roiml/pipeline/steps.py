"""The daily pipeline's steps. Each reads its input from files of earlier steps and writes its
own, so a scheduler can run any step alone, on any worker, any number of times.

extract -> compute_<set> (sharded) -> validate -> store -> update_statistics
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, func, select

from roiml.db import Base
from roiml.db.base import utcnow
from roiml.errors import PipelineError
from roiml.features.arrivals import ARRIVAL_RULE, check_arrivals
from roiml.features.engine import entity_frame
from roiml.features.engineer import as_of_midnight
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.sources import SourceTables, load_sources, parquet_sources
from roiml.features.summary import feature_statistics, sync_feature_definitions
from roiml.features.validation import validate_frame
from roiml.pipeline.runs import StepRecord, record_step
from roiml.pipeline.shards import ALL, Shard
from roiml.pipeline.step_names import COMPUTE_STEPS, STEPS
from roiml.pipeline.workspace import Workspace, replace_folder, write_parquet_atomically
from roiml.store.materialize import previous_day
from roiml.store.retrieval import FeatureStore
from roiml.store.tiers import store_all_sets

# COMPUTE_STEPS and STEPS stay exported here (re-exported from step_names) for existing callers.
__all__ = ["COMPUTE_STEPS", "STEPS", "PipelineContext", "run_day", "run_step"]


@dataclass
class PipelineContext:
    """Everything a step needs: the store, the day, and the clock."""

    store: FeatureStore
    day: date
    now: datetime | None = None  # wall clock (hot-tier TTL); default: the real time
    on_time: bool = False  # values count as created on the day (replaying a history)
    # Source tables whose unusual row count the operator vouched for (a real quiet day).
    accept_arrivals: frozenset[str] = frozenset()

    @property
    def engine(self) -> Engine:
        return self.store.engine

    @property
    def tenant_id(self) -> str:
        return self.store.tenant_id

    @property
    def as_of(self) -> datetime:
        return as_of_midnight(self.day)

    @property
    def workspace(self) -> Workspace:
        return Workspace.of(self.store.data_dir, self.tenant_id, self.day)

    @property
    def clock(self) -> datetime:
        return self.now or utcnow()


def _check_day(ctx: PipelineContext) -> None:
    if ctx.as_of > ctx.clock:
        raise PipelineError(f"{ctx.day} is in the future (now {ctx.clock:%Y-%m-%d %H:%M})")
    users = Base.metadata.tables["users"]
    with ctx.engine.connect() as conn:
        first = conn.execute(
            select(func.min(users.c.created_at)).where(users.c.tenant_id == ctx.tenant_id)
        ).scalar()
    if first is None:
        raise PipelineError(f"tenant {ctx.tenant_id!r} has no data; load or generate it first")
    if ctx.as_of <= first:
        raise PipelineError(
            f"{ctx.day} is before any data of tenant {ctx.tenant_id!r} ({first:%Y-%m-%d})"
        )


def extract(ctx: PipelineContext, shard: Shard, record: StepRecord) -> None:
    """Source rows the day's features can see, one Parquet file per table."""
    del shard  # extraction is per tenant: every shard reads the same extract
    _check_day(ctx)
    plan = ctx.store.engineer.features.plan(list(ctx.store.catalog.feature_sets))
    sources = load_sources(ctx.engine, ctx.tenant_id, plan.lookback_days, ctx.as_of, ctx.as_of)
    staged = ctx.workspace.root / f".extract-{datetime.now(UTC).timestamp():.0f}"
    for name, table in sources.tables.items():
        write_parquet_atomically(table, staged / f"{name}.parquet")
    replace_folder(staged, ctx.workspace.extract)
    record.rows = sum(t.num_rows for t in sources.tables.values())


def _extracted(ctx: PipelineContext) -> SourceTables:
    """The day's extract, read by the steps after ``extract``; refused when it is missing."""
    if not (ctx.workspace.extract / "users.parquet").exists():
        raise PipelineError(f"no extract for {ctx.day}; run the extract step first")
    return parquet_sources(ctx.workspace.extract)


def _compute(feature_set: str) -> Callable[[PipelineContext, Shard, StepRecord], None]:
    def compute(ctx: PipelineContext, shard: Shard, record: StepRecord) -> None:
        sources = _extracted(ctx)
        users = str(ctx.workspace.extract / "users.parquet").replace("'", "''")
        # A connection of its own: DuckDB's default connection is not safe across threads.
        with duckdb.connect() as con:
            ids = [
                row[0]
                for row in con.execute(
                    f"SELECT user_id FROM read_parquet('{users}', hive_partitioning = false) "
                    f"WHERE {shard.predicate('user_id')} ORDER BY user_id"
                ).fetchall()
            ]
        # The store's engine: it holds the tenant's catalog (its declared columns' features).
        engine = ctx.store.engineer.features
        frame = engine.compute(entity_frame(ids, ctx.as_of), [feature_set], sources)
        folder = ctx.workspace.computed(feature_set)
        for stale in folder.glob("shard-*.parquet"):
            if not stale.name.endswith(f"-of-{shard.count}.parquet"):
                stale.unlink()  # written under another shard count: not part of this run
        write_parquet_atomically(frame, folder / f"shard-{shard.label}.parquet")
        record.rows = frame.num_rows

    return compute


def _computed_frame(ctx: PipelineContext) -> pa.Table:
    joined: pa.Table | None = None
    for feature_set in ctx.store.catalog.feature_sets:
        files = sorted(ctx.workspace.computed(feature_set).glob("shard-*.parquet"))
        if not files:
            raise PipelineError(f"{feature_set} features of {ctx.day} were not computed")
        counts = {int(f.stem.rsplit("-of-", 1)[1]) for f in files}
        if len(counts) != 1 or len(files) != counts.pop():
            raise PipelineError(
                f"{feature_set} features of {ctx.day}: shards {[f.stem for f in files]} are "
                "incomplete; run every shard i/N of one N"
            )
        # ParquetFile, not read_table: the folder names (tenant=, date=) are not columns.
        part = pa.concat_tables([pq.ParquetFile(f).read() for f in files]).sort_by(ENTITY_ID)
        joined = (
            part if joined is None else joined.join(part, [ENTITY_ID, AS_OF]).sort_by(ENTITY_ID)
        )
    assert joined is not None
    return joined


def validate(ctx: PipelineContext, shard: Shard, record: StepRecord) -> None:
    """Quality gates over the whole day; the report is written either way."""
    del shard
    ctx.workspace.validation.unlink(missing_ok=True)
    frame = _computed_frame(ctx)
    arrivals = check_arrivals(_extracted(ctx), ctx.as_of, accept=ctx.accept_arrivals)
    report = validate_frame(frame, previous_day(ctx.store, ctx.day), ctx.store.catalog)
    report.issues[:0] = [a.issue() for a in arrivals.values() if not a.passed]
    ctx.workspace.validation.write_text(
        json.dumps(
            {
                "passed": report.passed,
                "rows": report.rows,
                "report": report.render(),
                "arrivals": {name: a.as_json() for name, a in arrivals.items()},
            }
        )
    )
    record.rows = frame.num_rows
    if not report.passed:
        short = sorted(i.feature for i in report.issues if i.rule == ARRIVAL_RULE)
        advice = (
            f"\nReload the rows of {', '.join(short)} for the day and run it again; if the "
            f"count is real (a holiday, an upstream change), run it with --accept-arrivals "
            f"{','.join(short)}."
            if short
            else ""
        )
        raise PipelineError(
            f"validation failed for {ctx.day}; nothing is published.\n{report.render()}{advice}"
        )


def store(ctx: PipelineContext, shard: Shard, record: StepRecord) -> None:
    """Publish the validated day: cold, then warm, then hot."""
    del shard
    path: Path = ctx.workspace.validation
    if not path.exists() or not json.loads(path.read_text()).get("passed"):
        raise PipelineError(f"{ctx.day} has not passed validation; run the validate step first")
    frame = _computed_frame(ctx)
    created = ctx.as_of if ctx.on_time else ctx.clock
    store_all_sets(ctx.store, frame, now=ctx.clock, created_at=created)
    record.rows = frame.num_rows


def update_statistics(ctx: PipelineContext, shard: Shard, record: StepRecord) -> None:
    """Feature statistics of the day into ml_features."""
    del shard
    frame = _computed_frame(ctx)
    catalog = ctx.store.catalog
    statistics = feature_statistics(frame, catalog)
    record.rows = sync_feature_definitions(ctx.engine, ctx.tenant_id, statistics, catalog=catalog)


_STEP_FUNCTIONS: dict[str, Callable[[PipelineContext, Shard, StepRecord], None]] = {
    "extract": extract,
    **{step: _compute(name) for step, name in COMPUTE_STEPS.items()},
    "validate": validate,
    "store": store,
    "update_statistics": update_statistics,
}


def run_step(ctx: PipelineContext, name: str, shard: Shard = ALL) -> int | None:
    """Run one step (recorded in ``pipeline_runs``); return the rows it produced."""
    if name not in _STEP_FUNCTIONS:
        raise PipelineError(f"unknown step {name!r}; the steps are: {', '.join(STEPS)}")
    if shard != ALL and name not in COMPUTE_STEPS:
        raise PipelineError(f"step {name} is not sharded; only the compute steps take --shard")
    label = None if shard == ALL else f"{shard.index}/{shard.count}"
    with record_step(ctx.engine, ctx.tenant_id, ctx.as_of, name, label) as record:
        _STEP_FUNCTIONS[name](ctx, shard, record)
    return record.rows


def run_day(
    ctx: PipelineContext,
    workers: int = 2,
    on_step: Callable[[str, int, int], None] | None = None,
) -> dict[str, int | None]:
    """Every step for one day, as one recorded run; the compute steps run ``workers`` at a
    time (DuckDB releases the GIL, so threads do run side by side).

    ``on_step(step, done, total)`` is told each step as it starts (e.g. a progress bar's).
    """
    rows: dict[str, int | None] = {}
    total = 1 + len(COMPUTE_STEPS) + 3
    report = on_step or (lambda _step, _done, _total: None)
    with record_step(ctx.engine, ctx.tenant_id, ctx.as_of, "run", None) as run:
        report("extract", 0, total)
        rows["extract"] = run_step(ctx, "extract")
        report("compute", 1, total)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {name: pool.submit(run_step, ctx, name) for name in COMPUTE_STEPS}
            for done, (name, future) in enumerate(futures.items(), start=2):
                rows[name] = future.result()
                report(name, done, total)
        for done, name in enumerate(("validate", "store", "update_statistics"), start=total - 3):
            report(name, done, total)
            rows[name] = run_step(ctx, name)
        report("done", total, total)
        run.rows = rows.get("store")
    return rows
