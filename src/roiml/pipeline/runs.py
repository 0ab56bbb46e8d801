"""Run records: every step of every day, with start, end, rows and outcome, in the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from roiml.db.base import utcnow
from roiml.db.engine import tenant_session
from roiml.db.ml_tables import PipelineRun

__all__ = ["StepRecord", "list_runs", "record_step"]


@dataclass
class StepRecord:
    """Filled in by the step while it runs: how many rows it produced."""

    rows: int | None = None


@contextmanager
def record_step(
    engine: Engine, tenant_id: str, run_date: datetime, step: str, shard: str | None
) -> Iterator[StepRecord]:
    """Record ``step`` as RUNNING, then SUCCESS with its rows, or FAILED with the error."""
    with tenant_session(engine, tenant_id) as session:
        row = PipelineRun(tenant_id=tenant_id, run_date=run_date, step=step, shard=shard)
        session.add(row)
        session.flush()
        run_id = row.id
    record = StepRecord()
    outcome, message = "SUCCESS", None
    try:
        yield record
    except BaseException as exc:
        outcome, message = "FAILED", f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        with tenant_session(engine, tenant_id) as session:
            stored = session.get(PipelineRun, run_id)
            if stored is not None:
                stored.ended_at = utcnow()
                stored.outcome = outcome
                stored.message = message
                stored.rows = record.rows


def list_runs(engine: Engine, tenant_id: str, limit: int = 50) -> list[PipelineRun]:
    """The latest step records, newest first."""
    with tenant_session(engine, tenant_id) as session:
        return list(
            session.scalars(
                select(PipelineRun)
                .where(PipelineRun.tenant_id == tenant_id)
                .order_by(PipelineRun.started_at.desc(), PipelineRun.id.desc())
                .limit(limit)
            )
        )
