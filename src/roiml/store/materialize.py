"""The day's materialization job: compute one day of every feature set, gate it on the quality
rules, hand it to :mod:`roiml.store.tiers` (the one module that writes a day to the three tiers),
and record the statistics in ``ml_features``. A day that fails validation is not stored
anywhere; the report says why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pyarrow as pa

from roiml.db.base import utcnow
from roiml.errors import FeatureError
from roiml.features.engineer import as_of_midnight
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.summary import feature_statistics, sync_feature_definitions
from roiml.features.validation import ValidationReport, validate_frame
from roiml.store import cold
from roiml.store.retrieval import FeatureStore
from roiml.store.tiers import store_all_sets

__all__ = [
    "FeatureValidationError",
    "MaterializedDay",
    "materialize_day",
    "previous_day",
]


class FeatureValidationError(FeatureError):
    """A day's features broke a quality rule; nothing of that day was stored."""

    exit_code = 5

    def __init__(self, report: ValidationReport):
        super().__init__(report.render())
        self.report = report


@dataclass
class MaterializedDay:
    """What one day wrote: rows, per-set results, and the validation report."""

    day: date
    rows: int
    report: ValidationReport
    stored: dict[str, int] = field(default_factory=dict)


def previous_day(store: FeatureStore, day: date) -> pa.Table | None:
    """The stored frame of the day before ``day`` (all sets), for the day-over-day check."""
    before = day - timedelta(days=1)
    parts = [
        cold.read(store.tenant_id, name, before, before, data_dir=store.data_dir)
        for name in store.catalog.feature_sets
    ]
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return None
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.join(part, [ENTITY_ID, AS_OF])
    return joined


def materialize_day(
    store: FeatureStore,
    day: date,
    *,
    entity_ids: list[str] | None = None,
    validate: bool = True,
    now: datetime | None = None,
    on_time: bool = False,
    on_step: Callable[[str, int, int], None] | None = None,
) -> MaterializedDay:
    """Every feature set of every user (or ``entity_ids``) as of ``day``'s midnight, stored
    cold, warm and hot after the day passes validation; statistics go to ``ml_features``.

    ``now`` is the wall clock for the hot tier's TTL (default: the real time; a day already
    older than the TTL is not put online). The values count as created ``now`` - a backfill is
    not known in the past - unless ``on_time``: then they count as created at the day's
    midnight, as if the daily run had happened then (how a simulated history is replayed).
    ``on_step(step, done, total)`` is told each step as it starts (e.g. a progress bar's).
    """
    report_step = on_step or (lambda _step, _done, _total: None)
    names = list(store.catalog.features)
    as_of = as_of_midnight(day)
    clock = now or utcnow()
    if as_of > clock:
        raise FeatureError(
            f"{day} is in the future (now is {clock:%Y-%m-%d %H:%M}); nothing stored"
        )
    report_step("computing", 0, 4)
    frame = store.engineer.compute_batch(names, entity_ids, as_of)
    report_step("validating", 1, 4)
    report = validate_frame(frame, previous_day(store, day) if validate else None, store.catalog)
    if validate and not report.passed:
        raise FeatureValidationError(report)
    result = MaterializedDay(day, frame.num_rows, report)
    report_step("storing cold, warm and hot", 2, 4)
    result.stored = store_all_sets(store, frame, now=now, created_at=as_of if on_time else now)
    report_step("statistics", 3, 4)
    sync_feature_definitions(
        store.engine,
        store.tenant_id,
        feature_statistics(frame, store.catalog),
        catalog=store.catalog,
    )
    return result
