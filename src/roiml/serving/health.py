"""Health: one model's (from a roll-up of the prediction log, monitoring and the registry
mirror) and the service's (database, Redis, registry, prediction log, models).

Both are asked for by anyone polling, so neither reads much per request:

* A model's traffic (count, mean latency, last prediction) comes from
  :class:`ModelHealthRollup`: per tenant and model, the log's rows older than a settling
  margin are summed once and kept, and each refresh adds only the rows since (an index range
  of ``ix_ml_predictions_tenant_model_time``) plus the unsettled tail. A refresh runs at most
  every ``ttl_seconds`` per tenant and model, one at a time; between refreshes a request is a
  dictionary lookup. Before the roll-up, every request counted and averaged the tenant's
  whole log (0.16-0.8 s on 51k rows; eight pollers cut predictions from 788/s to 122/s).
* The service's report is cached for ``ttl_seconds`` by :class:`ServiceHealthCache`, so a
  crowd of pollers costs one database round trip and one Redis ping per interval.

The error rate is the tenant's own: its refused and failed predictions in this process
(:meth:`~roiml.serving.metrics.ServingMetrics.error_count`), unless monitoring has judged a
period, whose rate is then reported.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from roiml.db.engine import tenant_session
from roiml.db.enums import ModelType
from roiml.db.ml_tables import MLModel, MLMonitoring, MLPrediction
from roiml.models.artifact import MODEL_NAMES
from roiml.monitoring.period import answered_second
from roiml.serving.components import Components
from roiml.serving.model_cache import ModelUnavailableError
from roiml.serving.schemas import ModelHealth, ServiceHealth
from roiml.serving.supervisor_state import supervisor_status

__all__ = [
    "ModelHealthRollup",
    "PublicHealth",
    "ServiceHealthCache",
    "Traffic",
    "model_health",
    "public_health",
    "service_health",
]


@dataclass(frozen=True, slots=True)
class Traffic:
    """A model's served predictions in the log: how many, their latency, the last one."""

    count: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    last_at: datetime | None = None

    def __add__(self, other: Traffic) -> Traffic:
        last = [t for t in (self.last_at, other.last_at) if t is not None]
        return Traffic(
            self.count + other.count,
            self.latency_sum + other.latency_sum,
            self.latency_count + other.latency_count,
            max(last) if last else None,
        )

    @property
    def avg_latency_ms(self) -> float | None:
        """Mean latency of the predictions that recorded one."""
        return self.latency_sum / self.latency_count if self.latency_count else None


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a refresh reads besides traffic: monitoring's latest verdict, the deployment."""

    drift_detected: bool
    monitored_error_rate: float | None
    deployed_at: datetime | None


def _traffic(
    session: Session,
    tenant: str,
    name: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Traffic:
    # A predict call's items are logged with the call's whole time: counted once per call
    # (grouped as monitoring.period.per_item_latency says), the mean is per item.
    second = answered_second(MLPrediction.predicted_at, session.get_bind().dialect.name)
    calls = select(
        func.count().label("calls_items"),
        MLPrediction.latency_ms.label("latency"),
        func.max(MLPrediction.predicted_at).label("last_at"),
    ).where(MLPrediction.tenant_id == tenant, MLPrediction.model_name == name)
    if since is not None:
        calls = calls.where(MLPrediction.predicted_at >= since)
    if until is not None:
        calls = calls.where(MLPrediction.predicted_at < until)
    grouped = calls.group_by(MLPrediction.model_version, MLPrediction.latency_ms, second).subquery()
    query = select(
        func.sum(grouped.c.calls_items),
        func.sum(grouped.c.latency),
        func.sum(case((grouped.c.latency.is_not(None), grouped.c.calls_items))),
        func.max(grouped.c.last_at),
    )
    row: Any = session.execute(query).one()
    count, latency_sum, latency_count, last_at = row
    return Traffic(int(count or 0), float(latency_sum or 0.0), int(latency_count or 0), last_at)


def _facts(session: Session, tenant: str, name: str, version: str | None) -> _Facts:
    monitoring = session.execute(
        select(MLMonitoring.drift_detected, MLMonitoring.error_rate)
        .where(MLMonitoring.tenant_id == tenant, MLMonitoring.model_name == name)
        .order_by(MLMonitoring.period_end.desc())
        .limit(1)
    ).first()
    deployed_at = None
    if version is not None:
        deployed_at = session.execute(
            select(MLModel.deployed_at).where(
                MLModel.tenant_id == tenant, MLModel.name == name, MLModel.version == version
            )
        ).scalar()
    return _Facts(
        drift_detected=bool(monitoring.drift_detected) if monitoring is not None else False,
        monitored_error_rate=monitoring.error_rate if monitoring is not None else None,
        deployed_at=deployed_at,
    )


def _deployment(parts: Components, tenant: str, model_type: ModelType) -> tuple[str | None, str]:
    try:
        return parts.models.get(tenant, model_type).version, "DEPLOYED"
    except ModelUnavailableError:
        return None, "NOT_DEPLOYED"


def _answer(
    parts: Components,
    tenant: str,
    name: str,
    deployment: tuple[str | None, str],
    traffic: Traffic,
    facts: _Facts,
) -> ModelHealth:
    error_rate = facts.monitored_error_rate
    if error_rate is None:
        # Only this tenant's errors: a process-wide count made a tenant with no traffic
        # report another tenant's 404s as its error rate of 1.0.
        errors = parts.metrics.error_count(tenant, name)
        total = traffic.count + errors
        error_rate = errors / total if total else None
    return ModelHealth(
        model_name=name,
        model_version=deployment[0],
        status=deployment[1],
        deployed_at=facts.deployed_at,
        prediction_count=traffic.count,
        avg_latency_ms=traffic.avg_latency_ms,
        error_rate=error_rate,
        drift_detected=facts.drift_detected,
        last_prediction_at=traffic.last_at,
    )


def model_health(parts: Components, tenant: str, model_type: ModelType) -> ModelHealth:
    """One model's health for ``tenant``, read in full from the log now (jobs and tests; the
    API answers from :class:`ModelHealthRollup`)."""
    name = MODEL_NAMES[model_type]
    deployment = _deployment(parts, tenant, model_type)
    # Predictions still queued for the log count too.
    parts.prediction_log.flush(timeout=2.0)
    with tenant_session(parts.engine, tenant) as session:
        traffic = _traffic(session, tenant, name)
        facts = _facts(session, tenant, name, deployment[0])
    return _answer(parts, tenant, name, deployment, traffic, facts)


@dataclass
class _Rolled:
    """One tenant and model's roll-up: the settled sum, and the last refresh's answer."""

    settled: Traffic
    settled_until: datetime | None
    summed_at: float  # monotonic time of the last full count
    traffic: Traffic
    facts: _Facts
    refreshed_at: float  # monotonic


class ModelHealthRollup:
    """Model health from a per tenant and model roll-up of the prediction log (see the module
    docstring). Thread-safe; one per app.

    ``settle_seconds``: rows whose ``predicted_at`` is older than this are summed for good
    (the log writes a row within a second or so of its prediction). Rows the spool replays
    later than that, after a database outage, are picked up by the full recount every
    ``recount_seconds``.
    """

    def __init__(
        self,
        parts: Components,
        *,
        ttl_seconds: float = 2.0,
        settle_seconds: float = 30.0,
        recount_seconds: float = 600.0,
        monotonic: Any = time.monotonic,
    ) -> None:
        """A roll-up over ``parts``' database and prediction log."""
        self._parts = parts
        self._ttl = ttl_seconds
        self._settle = timedelta(seconds=settle_seconds)
        self._recount = recount_seconds
        self._monotonic = monotonic
        self._rolled: dict[tuple[str, str], _Rolled] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def cached(self, tenant: str, model_type: ModelType) -> ModelHealth | None:
        """The answer without touching the database if the roll-up is fresh, else None
        (cheap enough for the event loop)."""
        name = MODEL_NAMES[model_type]
        rolled = self._rolled.get((tenant, name))
        if rolled is None or self._monotonic() - rolled.refreshed_at >= self._ttl:
            return None
        deployment = _deployment(self._parts, tenant, model_type)
        return _answer(self._parts, tenant, name, deployment, rolled.traffic, rolled.facts)

    def get(self, tenant: str, model_type: ModelType) -> ModelHealth:
        """The answer, refreshing the roll-up first if it is older than ``ttl_seconds``
        (blocking: call off the event loop)."""
        name = MODEL_NAMES[model_type]
        key = (tenant, name)
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        rolled = self._rolled.get(key)
        # One refresh per key at a time. While one runs, the others answer from the previous
        # roll-up rather than queue: waiting threads would hold the pool the batch route needs
        # (and a slow database would make them many). Only the very first answer waits.
        if lock.acquire(blocking=rolled is None):
            try:
                rolled = self._rolled.get(key)
                if rolled is None or self._monotonic() - rolled.refreshed_at >= self._ttl:
                    rolled = self._refresh(tenant, model_type, rolled)
                    self._rolled[key] = rolled
            finally:
                lock.release()
        assert rolled is not None  # acquired blocking when there was none
        deployment = _deployment(self._parts, tenant, model_type)
        return _answer(self._parts, tenant, name, deployment, rolled.traffic, rolled.facts)

    def _refresh(self, tenant: str, model_type: ModelType, rolled: _Rolled | None) -> _Rolled:
        parts = self._parts
        name = MODEL_NAMES[model_type]
        now = self._monotonic()
        # What was just served counts: its rows may still wait in the writer's queue.
        parts.prediction_log.flush(timeout=1.0)
        line = parts.clock() - self._settle
        start_over = (
            rolled is None
            or rolled.settled_until is None
            or now - rolled.summed_at >= self._recount
            # The clock went back (a pinned day restarts at midnight): rows may land behind
            # what was settled.
            or line < rolled.settled_until
        )
        version = _deployment(parts, tenant, model_type)[0]
        with tenant_session(parts.engine, tenant) as session:
            if start_over or rolled is None:
                settled = _traffic(session, tenant, name, until=line)
                summed_at = now
            else:
                settled = rolled.settled + _traffic(
                    session, tenant, name, since=rolled.settled_until, until=line
                )
                summed_at = rolled.summed_at
            tail = _traffic(session, tenant, name, since=line)
            facts = _facts(session, tenant, name, version)
        return _Rolled(settled, line, summed_at, settled + tail, facts, self._monotonic())


# --- the service -------------------------------------------------------------------------------


class PublicHealth(BaseModel):
    """What anyone may know of the service: whether it is up, and which parts are failing."""

    status: Literal["ok", "degraded", "down"]
    failing: list[str]


def public_health(report: ServiceHealth) -> PublicHealth:
    """The report without its details (hosts, ports, paths, usage, error texts): ``down`` when
    no prediction can be served (no model loaded, or the prediction log refusing), else
    ``degraded`` when a part fails."""
    failing = []
    if report.database != "ok":
        failing.append("database")
    if report.redis.startswith("down"):
        failing.append("redis")
    if report.registry != "ok":
        failing.append("registry")
    if not report.workers_ok:
        failing.append("workers")
    log_state = report.prediction_log.get("state", "ok")
    if log_state != "ok" or report.prediction_log.get("full"):
        failing.append("prediction_log")
    if report.registry != "ok" or log_state == "refusing" or report.prediction_log.get("full"):
        status: Literal["ok", "degraded", "down"] = "down"
    else:
        status = "degraded" if failing else "ok"
    return PublicHealth(status=status, failing=failing)


def service_health(parts: Components, redis_client: Any) -> ServiceHealth:
    """Database, Redis (through ``redis_client``, None when not configured), registry,
    prediction log and models; ``degraded`` when the database, Redis or every model is down."""
    database = "ok"
    try:
        with parts.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        database = f"down: {type(exc).__name__}"
    redis_state = "not configured"
    if redis_client is not None:
        try:
            redis_client.ping()
            redis_state = "ok"
        except Exception as exc:
            redis_state = f"down: {type(exc).__name__}"
    registry = "ok"
    models = parts.models.status(parts.settings.tenant_id)
    loaded = parts.models.loaded()
    if not loaded:
        registry = "no model loaded"
    log_stats = parts.prediction_log.stats()
    workers, workers_ok = _workers(supervisor_status(parts.settings), time.time())
    down = (
        database != "ok"
        or redis_state.startswith("down")
        or not loaded
        or log_stats["state"] != "ok"
        or not workers_ok
    )
    return ServiceHealth(
        status="degraded" if down else "ok",
        database=database,
        redis=redis_state,
        registry=registry,
        prediction_log=dict(log_stats),
        models=models,
        workers=workers,
        workers_ok=workers_ok,
    )


# A worker's death is news this long: the supervisor replaces it within seconds, but the
# capacity was down and its in-flight requests were reset.
_RECENT_EXIT_SECONDS = 60.0


def _workers(status: dict[str, Any] | None, now: float) -> tuple[str, bool]:
    """The supervisor's status as one line (``one process``, ``2 of 2 alive``, or ``1 of 2
    alive; worker 1 (pid 123) died 4 s ago: signal SIGKILL``) and whether it is healthy:
    every worker alive and none died in the last minute."""
    if status is None:
        return "one process", True
    alive, expected = int(status.get("alive", 0)), int(status.get("workers", 0))
    line = f"{alive} of {expected} alive"
    last = status.get("last_exit")
    recent = isinstance(last, dict) and now - float(last.get("at", 0.0)) < _RECENT_EXIT_SECONDS
    if isinstance(last, dict) and recent:
        line += (
            f"; worker {last.get('worker')} (pid {last.get('pid')}) died "
            f"{now - float(last.get('at', 0.0)):.0f} s ago: {last.get('exit')}"
        )
    return line, alive >= expected and not recent


class ServiceHealthCache:
    """:func:`service_health`, computed at most once per ``ttl_seconds`` (thread-safe)."""

    def __init__(
        self,
        parts: Components,
        redis_client: Any,
        *,
        ttl_seconds: float = 1.0,
        monotonic: Any = time.monotonic,
    ) -> None:
        """A cache over ``parts`` and the health route's Redis client."""
        self._parts = parts
        self._redis = redis_client
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._report: tuple[float, ServiceHealth] | None = None

    def cached(self) -> ServiceHealth | None:
        """The report if fresh, else None (no I/O)."""
        report = self._report
        if report is None or self._monotonic() - report[0] >= self._ttl:
            return None
        return report[1]

    def get(self) -> ServiceHealth:
        """The report, checking every part first if it is stale (blocking)."""
        with self._lock:
            fresh = self.cached()
            if fresh is not None:
                return fresh
            report = service_health(self._parts, self._redis)
            self._report = (self._monotonic(), report)
            return report
