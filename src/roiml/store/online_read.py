"""Reading the online store as it is: Feast's ``get_online_features`` for roiml.

The prediction path (:mod:`roiml.store.vectors`) reads the online store and falls back to the
warm store and to computing; this read does not. It answers what the hot tier holds for each
entity and feature set, and how old each vector is, which is what a person checking the
pipeline's output (``roiml features online``) or an application showing a homeowner's
features (``POST /v1/features/online``) wants to know. A set the store does not hold (never
written, past its TTL, or written under another definition of the set) is None; an entity that
is no user of the tenant is said to be unknown, not shown as all-missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from roiml.db.base import as_naive_utc, utcnow
from roiml.db.enums import EntityType
from roiml.errors import FeatureError
from roiml.store.online_records import set_spans
from roiml.store.vectors import PredictionVectors

__all__ = ["MAX_ONLINE_ENTITIES", "OnlineFeatures", "OnlineSet", "read_online"]

# One read is one round trip of entities x sets keys: bounded like a batch of predictions.
MAX_ONLINE_ENTITIES = 100
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class OnlineSet:
    """One feature set's stored vector: as of when, how old at the read, and its values
    (None for a null feature)."""

    name: str
    as_of: datetime
    age_seconds: float
    values: dict[str, float | None]


@dataclass(frozen=True)
class OnlineFeatures:
    """What the online store holds for one entity: per asked set, its vector or None."""

    entity_id: str
    known: bool
    sets: dict[str, OnlineSet | None]

    @property
    def complete(self) -> bool:
        """Every asked set was found."""
        return all(v is not None for v in self.sets.values())


def read_online(
    vectors: PredictionVectors,
    tenant: str,
    entity_ids: Sequence[str],
    feature_sets: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[OnlineFeatures]:
    """The online store's vectors of ``entity_ids`` (in order) for ``feature_sets`` (default:
    every set of the tenant's catalog), fresh at ``now`` (default: the clock).

    One online read; a database read only to tell an entity the store knows nothing of from
    one the tenant does not have. Raises :class:`~roiml.errors.FeatureError` for an unknown
    set or too many entities, and :class:`~roiml.store.breaker.DependencyUnavailableError`
    when the online store (or that database read) is down.
    """
    if not entity_ids:
        raise FeatureError("give at least one entity id")
    if len(entity_ids) > MAX_ONLINE_ENTITIES:
        raise FeatureError(
            f"{len(entity_ids)} entities asked; one online read takes at most "
            f"{MAX_ONLINE_ENTITIES}: split the list"
        )
    available = vectors.online_sets(tenant)
    names = list(dict.fromkeys(feature_sets)) if feature_sets else list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise FeatureError(
            f"unknown feature set(s) {', '.join(unknown)}; the tenant's sets are "
            f"{', '.join(available)}"
        )
    moment = as_naive_utc(now) if now is not None else utcnow()
    sets = [available[n] for n in names]
    ids = list(entity_ids)
    read = vectors.online.get_stamped(tenant, EntityType.USER, ids, sets, moment)
    empty = [ids[i] for i in np.flatnonzero(~read.found.any(axis=1))]
    known = set(ids)
    if empty:
        found = vectors.database(lambda: vectors.existing(tenant, empty), read=True)
        known -= set(empty) - found
    spans = set_spans(sets)
    values = read.values.tolist()  # one conversion; NaN (null) becomes None below
    out = []
    for row, entity_id in enumerate(ids):
        per_set: dict[str, OnlineSet | None] = {}
        for index, feature_set in enumerate(sets):
            if not read.found[row, index]:
                per_set[feature_set.name] = None
                continue
            a, b = spans[index]
            as_of = _EPOCH + timedelta(microseconds=int(read.as_of_us[row, index]))
            per_set[feature_set.name] = OnlineSet(
                feature_set.name,
                as_of,
                (moment - as_of).total_seconds(),
                {
                    name: (None if v != v else v)  # NaN (only NaN != itself) is null
                    for name, v in zip(feature_set.feature_names, values[row][a:b], strict=True)
                },
            )
        out.append(OnlineFeatures(entity_id, entity_id in known, per_set))
    return out
