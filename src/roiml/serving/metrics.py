"""Prometheus metrics of the API: requests and latency per route and model, classes, features.

With several server processes, ``roiml serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a shared
directory so ``/metrics`` adds up every process; in one process the default registry is used.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServingMetrics", "render"]

_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class ServingMetrics:
    """The API's counters and histograms, and this process's prediction errors per model."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        # Model health's error rate reads these: kept here rather than read back out of the
        # Prometheus samples, which are an exposition format, not the app's own state.
        self._errors: Tally[str] = Tally()
        self._errors_lock = threading.Lock()
        kwargs = {"registry": self.registry}
        self.requests = Counter(
            "roiml_http_requests_total",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            **kwargs,  # type: ignore[arg-type]
        )
        self.latency = Histogram(
            "roiml_http_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            **kwargs,  # type: ignore[arg-type]
        )
        self.predictions = Counter(
            "roiml_predictions_total",
            "Predictions served by model and predicted class.",
            ["model", "predicted_class"],
            **kwargs,  # type: ignore[arg-type]
        )
        self.prediction_errors = Counter(
            "roiml_prediction_errors_total",
            "Prediction requests refused or failed, by model and status code.",
            ["model", "status"],
            **kwargs,  # type: ignore[arg-type]
        )
        self.prediction_latency = Histogram(
            "roiml_prediction_seconds",
            "Time to features, prediction and explanation, by model.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            **kwargs,  # type: ignore[arg-type]
        )
        self.feature_reads = Counter(
            "roiml_feature_reads_total",
            "Feature vectors by where they came from (online hit, warm, computed, given).",
            ["source"],
            **kwargs,  # type: ignore[arg-type]
        )

    def count_errors(self, model: str, status: str, count: int) -> None:
        """``count`` requests of ``model`` refused or failed with HTTP ``status``."""
        self.prediction_errors.labels(model, status).inc(count)
        # Batches are served on pool threads: a bare Counter update could lose a count.
        with self._errors_lock:
            self._errors[model] += count

    def error_count(self, model: str) -> int:
        """Prediction requests of ``model`` refused or failed in this process so far."""
        with self._errors_lock:
            return self._errors[model]


def render(metrics: ServingMetrics, multiprocess_dir: str | None) -> bytes:
    """The exposition text: this process's registry, or every process's when multi-process."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(metrics.registry)
