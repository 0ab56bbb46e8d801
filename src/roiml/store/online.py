"""Hot tier: the latest feature vector per (tenant, entity type, feature set, entity id).

The interface every backend meets (:class:`OnlineStore`) and the factory that picks one
(:func:`open_online_store`): Redis (:mod:`roiml.store.online_redis`), or an embedded SQLite file
(:mod:`roiml.store.online_sqlite`) when no Redis is configured. Both backends build on
:mod:`roiml.store.online_records` (the binary records, keys and codec) and on nothing here, so
this module sits above them, as Feast lays out its online stores. The record types a caller
hands to the interface are re-exported here, so a caller needs only this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import pyarrow as pa
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from roiml.db.enums import EntityType
from roiml.settings import Settings
from roiml.store.breaker import CircuitBreaker
from roiml.store.online_records import (
    DEFAULT_TTL,
    FeatureMatrix,
    FeatureVector,
    OnlineFeatureSet,
    OnlineMatrix,
    StampedMatrix,
    VectorRows,
)
from roiml.store.online_redis import RedisOnlineStore
from roiml.store.online_sqlite import SqliteOnlineStore

__all__ = [
    "DEFAULT_TTL",
    "FeatureMatrix",
    "FeatureVector",
    "OnlineFeatureSet",
    "OnlineMatrix",
    "OnlineStore",
    "StampedMatrix",
    "VectorRows",
    "open_online_store",
    "redis_read_client",
]


class OnlineStore(Protocol):
    """The hot tier's interface, whatever the backend."""

    def write_day(
        self,
        frame: pa.Table,
        tenant: str,
        entity_type: EntityType | str,
        feature_set: OnlineFeatureSet,
        *,
        now: datetime | None = None,
    ) -> int:
        """Store one day's vectors; a stored vector with a newer as_of is kept. Return how
        many were written. Already-expired days (as_of + ttl <= now) write nothing."""
        ...

    def get_matrix(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
        now: datetime | None = None,
    ) -> OnlineMatrix:
        """All sets of all ``entity_ids`` as one matrix (the serving path); a vector missing,
        expired at ``now`` or written under another definition is NaN and not found."""
        ...

    def get_stamped(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
        now: datetime | None = None,
    ) -> StampedMatrix:
        """:meth:`get_matrix` with each found vector's as_of: the online read a person or a
        notebook makes (``roiml features online``, ``POST /v1/features/online``), which shows
        how old each set is."""
        ...

    def get_vectors(
        self,
        tenant: str,
        entity_type: EntityType | str,
        entity_ids: Sequence[str],
        feature_sets: Sequence[OnlineFeatureSet],
        now: datetime | None = None,
    ) -> VectorRows:
        """Per entity and set, the float64 vector, or None where :meth:`get_matrix` has
        nothing. The vectors are views of one fresh matrix per call."""
        ...

    def delete_tenant(self, tenant: str) -> int:
        """Remove every vector of ``tenant``; return how many."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_online_store(settings: Settings) -> OnlineStore:
    """Redis when ``settings.redis_url`` is set, else the embedded SQLite store.

    On Redis, reads are bounded by the settings' connect and read timeouts and go through a
    circuit breaker (:class:`RedisOnlineStore`); writes keep a client without those bounds.
    """
    if settings.redis_url:
        return RedisOnlineStore(
            redis.Redis.from_url(settings.redis_url),
            read_client=redis_read_client(settings),
            breaker=CircuitBreaker(
                "redis",
                failures=settings.breaker_failures,
                cooldown=settings.breaker_cooldown_seconds,
            ),
        )
    return SqliteOnlineStore(settings.online_store_path)


def redis_read_client(settings: Settings) -> redis.Redis:
    """A client of ``settings.redis_url`` for the serving path: the settings' connect and read
    timeouts, and no retries of its own (a breaker decides when to try again)."""
    if not settings.redis_url:
        raise ValueError("redis_read_client needs settings.redis_url")
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout_ms / 1000,
        socket_timeout=settings.redis_read_timeout_ms / 1000,
        retry=Retry(NoBackoff(), 0),
    )
