"""The seed's feature-engineering calls, on one tenant's SQL store, through the one engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta

import pyarrow as pa
from sqlalchemy import Engine

from roiml.db.base import utcnow
from roiml.db.enums import EntityType
from roiml.errors import FeatureError
from roiml.features.engine import FeatureEngine, entity_frame
from roiml.features.sources import load_sources
from roiml.features.validation import validate_features

__all__ = ["FeatureEngineer", "as_of_midnight"]

# Backfills run in slices of about this many (entity, date) rows to bound memory.
_BACKFILL_SLICE_ROWS = 500_000


def as_of_midnight(day: date | datetime) -> datetime:
    """The as-of instant of a daily batch for ``day``: its midnight (naive UTC)."""
    if isinstance(day, datetime):
        day = day.date()
    return datetime.combine(day, time())


class FeatureEngineer:
    """``compute_feature``, ``compute_feature_set``, ``backfill_features``, ``validate_features``.

    Every call builds an entity frame and runs :class:`FeatureEngine` on rows loaded from the SQL
    store, so one entity and a hundred thousand go through the same code.
    """

    def __init__(self, engine: Engine, tenant_id: str, feature_engine: FeatureEngine | None = None):
        self.engine = engine
        self.tenant_id = tenant_id
        self.features = feature_engine or FeatureEngine()

    def compute_feature(
        self,
        feature_name: str,
        entity_id: str,
        entity_type: str | EntityType = EntityType.USER,
        as_of_date: datetime | None = None,
    ) -> float | None:
        """One feature of one entity as of ``as_of_date`` (default: now)."""
        return self.compute_feature_set([feature_name], entity_id, entity_type, as_of_date)[
            feature_name
        ]

    def compute_feature_set(
        self,
        feature_names: Sequence[str],
        entity_id: str,
        entity_type: str | EntityType = EntityType.USER,
        as_of_date: datetime | None = None,
    ) -> dict[str, float | None]:
        """Features (names or feature-set names) of one entity as of ``as_of_date``."""
        frame = self.compute_batch(feature_names, [entity_id], as_of_date, entity_type)
        row = frame.slice(0, 1).to_pylist()[0]
        return {name: row[name] for name in frame.column_names[2:]}

    def compute_batch(
        self,
        feature_names: Sequence[str],
        entity_ids: Sequence[str] | None,
        as_of_date: datetime | None = None,
        entity_type: str | EntityType = EntityType.USER,
    ) -> pa.Table:
        """Features of many entities (all the tenant's users when None) as of one instant."""
        self.features.catalog.check_entity_type(entity_type)
        as_of = as_of_date or utcnow()
        plan = self.features.plan(feature_names)
        ids = self._entity_ids(entity_ids)
        sources = load_sources(self.engine, self.tenant_id, plan.lookback_days, as_of, as_of, ids)
        if entity_ids is None:
            ids = sources.tables["users"]["user_id"].to_pylist()
        return self.features.compute(entity_frame(ids or [], as_of), feature_names, sources)

    def backfill_features(
        self,
        feature_names: Sequence[str],
        entity_ids: Sequence[str] | None,
        start_date: date,
        end_date: date,
        entity_type: str | EntityType = EntityType.USER,
        on_days: Callable[[str, int, int], None] | None = None,
    ) -> pa.Table:
        """Features of ``entity_ids`` (all users when None) as of every midnight from
        ``start_date`` to ``end_date`` inclusive, as one feature frame ordered by date, entity.

        ``on_days(step, days_done, days)`` is told the progress (e.g. a progress bar's)."""
        self.features.catalog.check_entity_type(entity_type)
        if end_date < start_date:
            raise FeatureError(f"end date {end_date} is before start date {start_date}")
        days = [start_date + timedelta(days=i) for i in range((end_date - start_date).days + 1)]
        first, last = as_of_midnight(days[0]), as_of_midnight(days[-1])
        report = on_days or (lambda _step, _done, _total: None)
        plan = self.features.plan(feature_names)
        ids = self._entity_ids(entity_ids)
        report("loading sources", 0, len(days))
        sources = load_sources(self.engine, self.tenant_id, plan.lookback_days, first, last, ids)
        if entity_ids is None:
            ids = sources.tables["users"]["user_id"].to_pylist()
        ids = ids or []
        per_slice = max(1, _BACKFILL_SLICE_ROWS // max(len(ids), 1))
        parts = []
        for offset in range(0, len(days), per_slice):
            chunk = days[offset : offset + per_slice]
            frame = entity_frame(
                [entity for _ in chunk for entity in ids],
                [as_of_midnight(day) for day in chunk for _ in ids],
            )
            report(f"{chunk[0]} to {chunk[-1]}", offset, len(days))
            parts.append(self.features.compute(frame, feature_names, sources))
        report("done", len(days), len(days))
        return pa.concat_tables(parts)

    @staticmethod
    def validate_features(features: Mapping[str, object]) -> tuple[bool, list[str]]:
        """``(is_valid, errors)`` for one feature vector against the definitions' rules."""
        return validate_features(features)

    @staticmethod
    def _entity_ids(entity_ids: Sequence[str] | None) -> list[str] | None:
        if entity_ids is None:
            return None
        if isinstance(entity_ids, str):
            entity_ids = [entity_ids]
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            raise FeatureError("no entity ids given")
        return ids
