"""What the API runs on: the :class:`Components` bundle, its production wiring and the clock.

Its own module, below the app factory and the routes, so that everything that needs the
bundle (the routes, the model-health query) imports it without importing the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Engine

from roiml.db.base import utcnow
from roiml.db.engine import DatabaseTimeouts, make_engine
from roiml.features.declared import load_tenant_catalog
from roiml.models.artifact import ModelArtifact
from roiml.serving.metrics import ServingMetrics
from roiml.serving.model_cache import ModelCache, ModelUnavailableError
from roiml.serving.prediction_log import PredictionLog
from roiml.serving.ratelimit import RateLimiter, make_rate_limiter
from roiml.serving.security import check_startup
from roiml.settings import Settings
from roiml.store.breaker import CircuitBreaker, guard_engine
from roiml.store.online import OnlineStore, open_online_store

__all__ = [
    "Components",
    "database_timeouts",
    "registry_components",
    "serving_clock",
    "serving_engine",
]


@dataclass
class Components:
    """What the app runs on; tests build their own."""

    settings: Settings
    engine: Engine
    online: OnlineStore
    models: ModelCache
    prediction_log: PredictionLog
    rate_limiter: RateLimiter
    metrics: ServingMetrics
    multiprocess_dir: str | None = None
    # The breaker every call of ``engine`` goes through (serving_engine's); None: the
    # prediction's reads get one of their own.
    database_breaker: CircuitBreaker | None = None
    # The serving clock: features and as-of checks are "now" by it (tests replay a past day).
    clock: Callable[[], datetime] = utcnow


def serving_clock(settings: Settings) -> Callable[[], datetime]:
    """The API's "now" as the settings ask: the wall clock (naive UTC), or, with
    ``settings.today`` pinned, that day at the wall clock's time of day.

    The real time of day rather than a fixed hour: answers keep their order and stay distinct
    instants (the log, the dashboard's last prediction and latency move as they would), while
    every one of them lands in the pinned UTC day that monitoring judges, at whatever real hour
    the demo or replay runs; past the real midnight the clock starts the same pinned day again.
    """
    pinned = settings.today
    if pinned is None:
        return utcnow

    def pinned_clock() -> datetime:
        return datetime.combine(pinned, utcnow().time())

    return pinned_clock


def database_timeouts(settings: Settings) -> DatabaseTimeouts:
    """The API's bounds on its PostgreSQL calls, from ``settings`` (SQLite ignores them)."""
    return DatabaseTimeouts(
        connect_seconds=settings.database_connect_timeout_seconds,
        statement_ms=settings.database_statement_timeout_ms,
        pool_seconds=settings.database_pool_timeout_seconds,
    )


def serving_engine(settings: Settings, url: str | None = None) -> tuple[Engine, CircuitBreaker]:
    """The API's engine on ``url`` (default: the settings' database) with its bounds, and the
    breaker that every connect and statement of it goes through."""
    url = url or settings.resolved_database_url
    engine = make_engine(url, timeouts=database_timeouts(settings))
    breaker = CircuitBreaker(
        "database",
        failures=settings.breaker_failures,
        cooldown=settings.breaker_cooldown_seconds,
    )
    guard_engine(engine, breaker)
    return engine, breaker


def registry_components(
    settings: Settings,
    multiprocess_dir: str | None = None,
    *,
    metrics: ServingMetrics | None = None,
) -> Components:
    """The production wiring: registry-backed models, the settings' stores and log, and the
    clock of :func:`serving_clock`. ``metrics`` default to the process's Prometheus registry,
    which takes one set only: an app built in process beside the served one (the demo's calls,
    a population scoring) passes ``ServingMetrics(CollectorRegistry())``."""
    check_startup(settings)
    engine, breaker = serving_engine(settings)
    registries: dict[str, Any] = {}

    def registry(tenant: str) -> Any:
        if tenant not in registries:
            from roiml.registry import ModelRegistry  # MLflow imports take seconds

            registries[tenant] = ModelRegistry(settings, engine, tenant)
        return registries[tenant]

    def load(tenant: str, name: str) -> tuple[str, ModelArtifact]:
        reg = registry(tenant)
        version = probe(tenant, name)
        if version is None:
            raise ModelUnavailableError(
                f"{name} has no production version for tenant {tenant!r}; train and promote one "
                f"(roiml train, then roiml models promote {name} N production)"
            )
        return version, reg.load_model(name, version)

    def probe(tenant: str, name: str) -> str | None:
        version: str | None = registry(tenant).current_version(name, "production")
        return version

    return Components(
        settings=settings,
        engine=engine,
        online=open_online_store(settings),
        models=ModelCache(
            load,
            probe,
            settings.model_poll_seconds,
            load_timeout=settings.model_load_timeout_seconds,
            catalogs=partial(load_tenant_catalog, settings.data_dir),
        ),
        prediction_log=PredictionLog(settings, engine),
        rate_limiter=make_rate_limiter(settings),
        metrics=metrics if metrics is not None else ServingMetrics(),
        multiprocess_dir=multiprocess_dir,
        database_breaker=breaker,
        clock=serving_clock(settings),
    )
