"""Truth that arrives later: the transactions that closed after a prediction, within its horizon.

In the simulated world (and on a platform that records closings) this labels the move and
transaction-type predictions without anyone sending feedback. Only predictions whose horizon
has fully passed by ``now`` are labelled: an open window would count every homeowner as staying.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, select

from roiml.db.engine import tenant_session
from roiml.db.source_models import Transaction

__all__ = ["first_transactions"]


def first_transactions(
    engine: Engine,
    tenant_id: str,
    entity_ids: list[str],
    at: np.ndarray,
    horizon_days: int,
    now: datetime,
) -> tuple[list[str | None], np.ndarray]:
    """Per prediction: the type of the first transaction closed in (at, at + horizon], or None;
    and whether its horizon has passed (only those rows carry an answer)."""
    count = len(entity_ids)
    if count == 0:
        return [], np.zeros(0, dtype=bool)
    horizon = np.timedelta64(horizon_days, "D")
    ended: np.ndarray = np.asarray((at + horizon) <= np.datetime64(now, "us"), dtype=bool)
    if not ended.any():
        return [None] * count, ended
    start = at[ended].min().astype(datetime)
    stop = (at[ended].max() + horizon).astype(datetime)
    users = sorted(set(np.asarray(entity_ids, dtype=object)[ended].tolist()))
    with tenant_session(engine, tenant_id) as session:
        rows = session.execute(
            select(Transaction.user_id, Transaction.transaction_type, Transaction.closed_at).where(
                Transaction.tenant_id == tenant_id,
                Transaction.closed_at > start,
                Transaction.closed_at <= stop + timedelta(seconds=1),
                Transaction.user_id.in_(users),
            )
        ).all()
    closings = pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.string()),
            "kind": pa.array([str(r[1].value if hasattr(r[1], "value") else r[1]) for r in rows]),
            "closed_at": pa.array([r[2] for r in rows], pa.timestamp("us")),
        }
    )
    predictions = pa.table(
        {
            "i": pa.array(np.arange(count)),
            "user_id": pa.array(entity_ids, pa.string()),
            "at": pa.array(at.astype("datetime64[us]")),
        }
    )
    con = duckdb.connect()
    try:
        con.register("closings", closings)
        con.register("predictions", predictions)
        found = con.execute(
            f"""
            SELECT p.i, arg_min(c.kind, c.closed_at) AS kind
            FROM predictions p JOIN closings c
              ON c.user_id = p.user_id AND c.closed_at > p.at
             AND c.closed_at <= p.at + INTERVAL {int(horizon_days)} DAY
            GROUP BY p.i
            """
        ).to_arrow_table()
    finally:
        con.close()
    kinds = np.full(count, None, dtype=object)
    kinds[found["i"].to_numpy()] = found["kind"].to_numpy(zero_copy_only=False)
    return list(kinds.tolist()), ended
