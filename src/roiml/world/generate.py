"""``roiml world generate``: fill the source tables of one tenant and keep the truth apart.

Blocks of users are simulated one after another (memory stays bounded by the block size) and
streamed into the database inside ONE transaction: a world is either all there or not at all.
The ground truth goes to a staging folder that replaces the tenant's truth folder only after
the database commit.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, delete, func, select

from roiml.db import SOURCE_TABLES, Base
from roiml.db.bulk import bulk_insert
from roiml.errors import WorldError
from roiml.world.assemble import assemble_block
from roiml.world.config import BLOCK_USERS, WorldConfig
from roiml.world.engagement import simulate_engagement
from roiml.world.geo import locate_homes
from roiml.world.journeys import REFERENCE_USERS, calibrate_hazards, simulate_journeys
from roiml.world.macro import build_macro
from roiml.world.population import build_population
from roiml.world.truth import MOVE_DAILY

__all__ = ["WorldReport", "generate_world", "truth_dir"]

_TRUTH_SINGLE_FILES = ("users", "journeys", "property_values")


@dataclass
class WorldReport:
    """What a generation wrote and how long it took."""

    config: dict[str, object]
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    truth_dir: str = ""


def truth_dir(data_dir: Path, tenant_id: str) -> Path:
    """Where the ground truth of ``tenant_id``'s world lives."""
    return data_dir / "world" / tenant_id / "truth"


def _with_tenant(table: pa.Table, tenant_id: str) -> pa.Table:
    return table.append_column("tenant_id", pa.array(np.full(table.num_rows, tenant_id)))


def _existing_users(engine: Engine, tenant_id: str) -> int:
    users = Base.metadata.tables["users"]
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(users).where(users.c.tenant_id == tenant_id)
        ).scalar_one()
    return int(count)


def generate_world(
    engine: Engine,
    data_dir: Path,
    config: WorldConfig,
    *,
    replace: bool = False,
    on_block: Callable[[int, int], None] | None = None,
) -> WorldReport:
    """Generate ``config``'s world into ``engine`` and its truth under ``data_dir``.

    Refuses to add a second world to a tenant that has one unless ``replace`` is set, in which
    case the tenant's source rows are deleted in the same transaction.
    """
    existing = _existing_users(engine, config.tenant_id)
    if existing and not replace:
        raise WorldError(
            f"tenant {config.tenant_id!r} already has a world ({existing} users); "
            "pass --replace to regenerate it, or choose another --tenant"
        )
    report = WorldReport(config={k: str(v) for k, v in asdict(config).items()})
    started = time.perf_counter()
    macro = build_macro(config, np.random.default_rng(np.random.SeedSequence([config.seed, 0])))
    reference_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
    reference = build_population(0, REFERENCE_USERS, config.start, macro, reference_rng)
    calibration = calibrate_hazards(reference, macro, config.days, reference_rng)
    open_shift = (
        (config.shift_day, config.email_open_shift)
        if config.shift_day is not None and config.email_open_shift
        else None
    )
    final_dir = truth_dir(data_dir, config.tenant_id)
    staging = final_dir.with_name(f"truth.staging-{time.time_ns()}")
    (staging / MOVE_DAILY).mkdir(parents=True)
    writers: dict[str, pq.ParquetWriter] = {}
    rows = {name: 0 for name in SOURCE_TABLES}
    timing = {"simulate": 0.0, "write_database": 0.0, "write_truth": 0.0}
    tables = Base.metadata.tables
    try:
        with engine.begin() as conn:
            if replace:
                for name in SOURCE_TABLES:
                    conn.execute(
                        delete(tables[name]).where(tables[name].c.tenant_id == config.tenant_id)
                    )
            for name, table in (
                ("agents", macro.agents),
                ("market_statistics", macro.market_statistics),
                ("economic_indicators", macro.economic_indicators),
            ):
                rows[name] += bulk_insert(conn, tables[name], _with_tenant(table, config.tenant_id))
            for block in range(config.blocks):
                tick = time.perf_counter()
                rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, block]))
                first = block * BLOCK_USERS
                size = min(BLOCK_USERS, config.users - first)
                pop = build_population(first, size, config.start, macro, rng)
                journeys = simulate_journeys(pop, macro, config.days, rng, calibration)
                engagement = simulate_engagement(
                    pop, journeys, macro, config.start, config.days, rng, open_shift
                )
                block_tables = assemble_block(
                    pop, journeys, engagement, macro, config.start, config.days, rng
                )
                block_tables.source["properties"] = locate_homes(
                    block_tables.source["properties"], macro, config.users, config.seed, block
                )
                timing["simulate"] += time.perf_counter() - tick
                tick = time.perf_counter()
                for name, table in block_tables.source.items():
                    rows[name] += bulk_insert(
                        conn, tables[name], _with_tenant(table, config.tenant_id)
                    )
                timing["write_database"] += time.perf_counter() - tick
                tick = time.perf_counter()
                _write_truth(staging, block, block_tables.truth, writers)
                timing["write_truth"] += time.perf_counter() - tick
                if on_block:
                    on_block(block + 1, config.blocks)
            tick = time.perf_counter()
        timing["commit"] = time.perf_counter() - tick
    except BaseException:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for writer in writers.values():
        writer.close()
    report.rows = rows
    report.seconds = {k: round(v, 2) for k, v in timing.items()}
    report.seconds["total"] = round(time.perf_counter() - started, 2)
    (staging / "world.json").write_text(json.dumps(asdict(report), indent=2))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    staging.rename(final_dir)
    report.truth_dir = str(final_dir)
    return report


def _write_truth(
    staging: Path, block: int, truth: dict[str, pa.Table], writers: dict[str, pq.ParquetWriter]
) -> None:
    for name in _TRUTH_SINGLE_FILES:
        table = truth[name]
        if name not in writers:
            writers[name] = pq.ParquetWriter(
                staging / f"{name}.parquet", table.schema, compression="zstd"
            )
        writers[name].write_table(table.cast(writers[name].schema))
    pq.write_table(
        truth[MOVE_DAILY],
        staging / MOVE_DAILY / f"block-{block:05d}.parquet",
        compression="zstd",
    )
