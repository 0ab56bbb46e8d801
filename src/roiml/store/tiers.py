"""Writing one computed day to all three tiers, all or nothing: the one module that does.

:func:`store_sets` takes the storage explicitly; :func:`store_all_sets` publishes every set of a
:class:`~roiml.store.retrieval.FeatureStore`'s catalog (what the daily job and the pipeline's
store step call, after they computed and validated the day).

Cold is staged first (hidden files), warm commits every set in one transaction, and only then
are the cold files renamed into place and the hot vectors written. Until the commit no tier
shows any of the day; after it, a crash is completed by running again, since every tier's
write is idempotent (and hot never lets an older write replace a newer vector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine

from roiml.db.enums import EntityType
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.store import cold, warm
from roiml.store.cold import check_day, check_entity_type
from roiml.store.online import DEFAULT_TTL, OnlineFeatureSet, OnlineStore
from roiml.store.retrieval import FeatureStore

__all__ = ["StoredDay", "store_all_sets", "store_day", "store_sets"]


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
    database: Engine,
    online: OnlineStore,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    created_at: datetime | None = None,
) -> StoredDay:
    """Write one day of one feature set to every tier; see :func:`store_sets`."""
    return store_sets(
        {feature_set: (frame, feature_names)},
        tenant,
        entity_type,
        data_dir=data_dir,
        database=database,
        online=online,
        ttl=ttl,
        now=now,
        created_at=created_at,
    )[feature_set]


def store_sets(
    days: Mapping[str, tuple[pa.Table, Sequence[str]]],
    tenant: str,
    entity_type: EntityType | str,
    *,
    data_dir: Path,
    database: Engine,
    online: OnlineStore,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    created_at: datetime | None = None,
) -> dict[str, StoredDay]:
    """Publish one day (one as-of) of several feature sets to every tier, all or nothing.

    ``days`` maps a feature set to its frame and declared feature order. Every frame is
    validated and staged in cold (hidden files) first; warm takes every set in ONE transaction;
    only after that commit do the cold files appear (one rename each) and the hot vectors go
    online. Bad input or a failure before the commit leaves every tier as it was; a crash after
    it is completed by running again (every tier's write is idempotent). ``created_at`` (default
    now) is when the values count as known, for point-in-time training; ``now`` is the clock for
    the hot tier's TTL.
    """
    kind = check_entity_type(entity_type)
    parts = {name: check_day(frame, tenant, name, names) for name, (frame, names) in days.items()}
    staged = {
        name: cold.stage_day(
            day.frame, tenant, name, day.feature_names, data_dir=data_dir, created_at=created_at
        )
        for name, day in parts.items()
    }
    changed: dict[str, int] = {}
    try:
        with database.begin() as conn:
            for name, day in parts.items():
                changed[name] = warm.write_day(
                    conn, day.frame, tenant, kind, name, day.feature_names, created_at=created_at
                )
    except BaseException:
        for pending in staged.values():
            cold.discard(pending)
        raise
    stored: dict[str, StoredDay] = {}
    for name, day in parts.items():
        path = cold.publish(staged[name])
        hot = OnlineFeatureSet(name, day.feature_names, ttl)
        written = online.write_day(day.frame, tenant, kind, hot, now=now)
        stored[name] = StoredDay(day.as_of, day.frame.num_rows, path, changed[name], written)
    return stored


def store_all_sets(
    store: FeatureStore, frame: pa.Table, *, now: datetime | None, created_at: datetime | None
) -> dict[str, int]:
    """Publish one day of every feature set of ``store``'s catalog from ``frame`` (all of the
    catalog's features), all or nothing (see :func:`store_sets`); return the rows stored per set."""
    days = {
        name: (frame.select([ENTITY_ID, AS_OF, *names]), names)
        for name, names in store.catalog.feature_sets.items()
    }
    stored = store_sets(
        days,
        store.tenant_id,
        EntityType.USER,
        data_dir=store.data_dir,
        database=store.engine,
        online=store.online,
        ttl=store.ttl,
        now=now,
        created_at=created_at,
    )
    return {name: day.rows for name, day in stored.items()}
