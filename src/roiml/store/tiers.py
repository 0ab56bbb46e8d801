"""Writing one computed day to all three tiers: cold, then warm, then hot.

The order is the recovery story. Cold is the record, so it is written first; warm and hot are
derived from the same frame. A crash after cold leaves the day on disk and the other tiers at
the previous day, which still serve (hot never lets an older write replace a newer vector);
running :func:`store_day` again completes it, because every tier's write is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa

from roiml.db.enums import EntityType
from roiml.store import cold, warm
from roiml.store.cold import check_day, check_entity_type
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet, OnlineStore

__all__ = ["StoredDay", "store_day"]


@dataclass(frozen=True)
class StoredDay:
    """What :func:`store_day` wrote: the day's as_of and row count, and each tier's result."""

    as_of: datetime
    rows: int
    cold_path: Path
    warm_changed: int
    hot_written: int


def store_day(
    frame: pa.Table,
    tenant: str,
    entity_type: EntityType | str,
    feature_set: str,
    feature_names: Sequence[str],
    *,
    data_dir: Path,
    database: warm.Database,
    online: OnlineStore,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    created_at: datetime | None = None,
) -> StoredDay:
    """Write one day of ``feature_set`` to cold, warm and hot, in that order.

    The frame is validated before any tier is touched, so bad input writes nothing anywhere.
    ``database`` is an engine or the caller's connection (see :func:`roiml.store.warm.write_day`);
    ``ttl`` is how long hot vectors live after their as_of; ``now`` defaults to the current time.
    ``created_at`` (default now) is when the values count as known, for point-in-time training.
    """
    day = check_day(frame, tenant, feature_set, feature_names)
    kind = check_entity_type(entity_type)
    cold_path = cold.write_day(
        day.frame, tenant, feature_set, day.feature_names, data_dir=data_dir, created_at=created_at
    )
    warm_changed = warm.write_day(database, day.frame, tenant, kind, feature_set, day.feature_names)
    hot_set = OnlineFeatureSet(feature_set, day.feature_names, ttl)
    hot_written = online.write_day(day.frame, tenant, kind, hot_set, now=now)
    return StoredDay(day.as_of, day.frame.num_rows, cold_path, warm_changed, hot_written)
