"""What the app builds from its :class:`~roiml.serving.components.Components` once, and every
prediction route uses: the prediction service, and the step that serves a request group,
queues its log rows and counts its metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from roiml.db.enums import ModelType, PredictionType
from roiml.models.artifact import MODEL_NAMES
from roiml.serving.components import Components
from roiml.serving.schemas import PredictionRequest
from roiml.serving.service import ItemError, PredictionService, ServedPrediction
from roiml.settings import Settings
from roiml.store.vectors import PredictionVectors

__all__ = ["Serving"]

# Metric labels: the registered model names, looked up per item without an enum conversion.
_MODEL_LABELS = {kind: MODEL_NAMES[ModelType(kind.value)] for kind in PredictionType}


@dataclass(frozen=True)
class Serving:
    """The app's running parts: its components, the prediction service over them, and one
    Redis client for ``/health`` (a new one per call paid a TCP connect each time)."""

    parts: Components
    service: PredictionService
    health_redis: Any

    @classmethod
    def build(cls, settings: Settings, parts: Components) -> Serving:
        """The service and health client over ``parts``, as ``settings`` ask."""
        service = PredictionService(
            PredictionVectors(parts.engine, parts.online),
            parts.models,
            clock=parts.clock,
            batch_threads=settings.api_batch_threads,
        )
        return cls(parts, service, _redis_client(settings.redis_url))

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
        # Counted per label set, one call each: a batch of 1000 made 3000 metric calls.
        predicted: Counter[tuple[str, str]] = Counter()
        sources: Counter[str] = Counter()
        failed: Counter[tuple[str, str]] = Counter()
        for (kind, _), outcome in zip(items, outcomes, strict=True):
            name = _MODEL_LABELS[kind]
            if isinstance(outcome, ServedPrediction):
                predicted[name, outcome.body["predicted_class"] or ""] += 1
                sources[outcome.body["feature_source"]] += 1
            else:
                failed[name, str(outcome.status_code)] += 1
        for (name, label), count in predicted.items():
            metrics.predictions.labels(name, label).inc(count)
        for source, count in sources.items():
            metrics.feature_reads.labels(source).inc(count)
        for (name, status), count in failed.items():
            metrics.count_errors(name, status, count)
        # One observation per model and call: what the call took to serve that model's items.
        for name in {name for name, _ in predicted}:
            metrics.prediction_latency.labels(name).observe(seconds)
        return outcomes

    def close(self) -> None:
        """Release what :meth:`build` made and every component (the app's shutdown)."""
        parts = self.parts
        parts.models.stop()
        self.service.close()
        if self.health_redis is not None:
            self.health_redis.close()
        parts.prediction_log.close()
        parts.online.close()
        parts.engine.dispose()


def _redis_client(url: str | None) -> Any:
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
