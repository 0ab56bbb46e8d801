"""What the app builds from its :class:`~roiml.serving.components.Components` once, and every
prediction route uses: the prediction service, and the step that serves a request group,
queues its log rows and counts its metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from roiml.db.engine import is_postgres
from roiml.db.enums import ModelType, PredictionType
from roiml.features.declared import load_tenant_catalog
from roiml.models.artifact import MODEL_NAMES
from roiml.serving.components import Components
from roiml.serving.metrics import class_label
from roiml.serving.schemas import PredictionRequest
from roiml.serving.service import ItemError, PredictionService, ServedPrediction
from roiml.settings import Settings
from roiml.store.breaker import CircuitBreaker
from roiml.store.online import redis_read_client
from roiml.store.vectors import PredictionVectors

__all__ = ["Serving"]

# Metric labels: the registered model names, looked up per item without an enum conversion.
_MODEL_LABELS = {kind: MODEL_NAMES[ModelType(kind.value)] for kind in PredictionType}


@dataclass(frozen=True)
class Serving:
    """The app's running parts: its components, the prediction service over them, and one
    Redis client for ``/health`` (a new one per call paid a TCP connect each time; its
    timeouts are the online read's, so a hung Redis costs ``/health`` tens of milliseconds)."""

    parts: Components
    service: PredictionService
    health_redis: Any

    @classmethod
    def build(cls, settings: Settings, parts: Components) -> Serving:
        """The service and health client over ``parts``, as ``settings`` ask."""
        # The database's breaker: a dead one fails a prediction's reads at once, not after a
        # connect timeout each (the online store holds Redis's). An engine guarded by one
        # (serving_engine) has its calls counted there: the reads only add their own timeouts.
        database = parts.database_breaker or CircuitBreaker(
            "database",
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_seconds,
        )
        vectors = PredictionVectors(
            parts.engine,
            parts.online,
            # Each tenant's catalog: the features of the columns it declared beside the built-in.
            catalogs=partial(load_tenant_catalog, settings.data_dir),
            database_breaker=database,
            engine_guarded=parts.database_breaker is not None,
            # A server can hang; the embedded SQLite file cannot, and its reads stay inline.
            read_timeout=(
                settings.database_read_timeout_ms / 1000 if is_postgres(parts.engine) else None
            ),
        )
        service = PredictionService(
            vectors,
            parts.models,
            clock=parts.clock,
            batch_threads=settings.api_batch_threads,
            max_extrapolation_days=settings.api_max_extrapolation_days,
        )
        # Read before the first request needs it (it waited ~0.3 s on a 10,000-homeowner world).
        service.data_ends.prime(settings.tenant_id)
        health = redis_read_client(settings) if settings.redis_url else None
        return cls(parts, service, health)

    @property
    def online_ready(self) -> bool:
        """Whether a prediction can expect its features from the online store now (its
        breaker is closed): a route serving on the event loop should otherwise hand the
        request to a thread, since the fallback reads the database."""
        breaker = getattr(self.parts.online, "breaker", None)
        return breaker is None or breaker.state == "closed"

    def serve(
        self,
        tenant: str,
        items: Sequence[tuple[PredictionType, PredictionRequest]],
        *,
        wake: bool = True,
    ) -> list[ServedPrediction | ItemError]:
        """Serve ``items`` (one answer each, in order), queue the served ones for the
        prediction log (``wake``: wake its writer now) and count them in the metrics."""
        started = time.perf_counter()
        outcomes = self.service.predict(tenant, items)
        served = [o.log_record for o in outcomes if isinstance(o, ServedPrediction)]
        if served:
            self.parts.prediction_log.submit(served, wake=wake)
        seconds = time.perf_counter() - started
        metrics = self.parts.metrics
        # Counted per label set, one call each: a batch of 1000 made 3000 metric calls. The
        # version is the one that answered (a request holds its model for its whole life).
        predicted: Counter[tuple[str, str, str]] = Counter()
        sources: Counter[str] = Counter()
        failed: Counter[tuple[str, str]] = Counter()
        for (kind, _), outcome in zip(items, outcomes, strict=True):
            name = _MODEL_LABELS[kind]
            if isinstance(outcome, ServedPrediction):
                body = outcome.body
                label = class_label(name, body["predicted_class"])
                predicted[name, str(body["model_version"]), label] += 1
                sources[body["feature_source"]] += 1
            else:
                failed[name, str(outcome.status_code)] += 1
        for (name, version, label), count in predicted.items():
            metrics.predictions.labels(name, version, label).inc(count)
        for source, count in sources.items():
            metrics.feature_reads.labels(source).inc(count)
        for (name, status), count in failed.items():
            metrics.count_errors(name, status, count)
        # One observation per model version and call: what the call took to serve its items.
        for name, version in {(name, version) for name, version, _ in predicted}:
            metrics.prediction_latency.labels(name, version).observe(seconds)
        return outcomes

    def close(self) -> None:
        """Release what :meth:`build` made and every component (the app's shutdown)."""
        parts = self.parts
        parts.models.stop()
        self.service.close()
        self.service.vectors.close()
        if self.health_redis is not None:
            self.health_redis.close()
        parts.prediction_log.close()
        parts.online.close()
        parts.engine.dispose()
