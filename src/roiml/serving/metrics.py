"""Prometheus metrics of the API: requests and latency per route and model, classes, features.

Names follow Prometheus' conventions: base units (``_seconds``), ``_total`` counters, a
``_duration_seconds`` histogram for the HTTP latency. Every label has a bounded set of values:
routes are templates (``/api/ml/v1/models/{model_name}/features``), never raw paths; models are
the four registered names; ``model_version`` is a version a process has served; the
contact-timing model's ``predicted_class`` is the recommended weekday (7 values, see
:func:`class_label`), not its 168 weekday-hour slots.

With several server processes, ``roiml serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a shared
directory so ``/metrics`` adds up every process; in one process the default registry is used.
Gauges read from the database (drift, freshness: :mod:`roiml.serving.monitoring_gauges`) are
not multi-process files but collectors added with :meth:`ServingMetrics.add_collector`, whose
values each worker reads on its own and renders at scrape.

What a tenant did is labelled with its tenant: predictions per class and prediction errors
carry a ``tenant`` label, as do the monitoring gauges, and :func:`render` shows a caller only
its own tenant's series (none to a caller without a token while auth is on). Requests and
latency per route, feature reads and prediction latency are the service's, without a tenant.
"""

from __future__ import annotations

import re
import threading
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Self

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from roiml.serving.security import current_tenant

__all__ = ["CONTACT_TIMING_MODEL", "CONTENT_TYPE_LATEST", "ServingMetrics", "class_label", "render"]

_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# The tenant label of what is counted outside any request (a job scoring in process).
_NO_TENANT = ""
# A sample's tenant label; tenant ids are slugs, so no escaped quote can occur in one.
_TENANT_LABEL = re.compile(rb'[{,]tenant="([^"]*)"')
# The contact-timing model answers a weekday and an hour ("MON-19"): 168 classes, 55+ of them
# seen in a day of demo traffic, each a series per tenant and version. Counted by weekday.
CONTACT_TIMING_MODEL = "contact_timing_model"
_WEEKDAYS = frozenset({"MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"})
# What a contact-timing class that is not "<weekday>-<hour>" is counted as (none is today).
OTHER_CLASS = "other"


def class_label(model: str, predicted_class: str | None) -> str:
    """The ``predicted_class`` label of one answer: the class itself (move: HIGH / MEDIUM /
    LOW, transaction type: its four), ``""`` for the value model (no class), and for the
    contact-timing model only the weekday of the recommended slot (``MON-19`` -> ``MON``), so
    the label takes at most 7 values there instead of 168."""
    if not predicted_class:
        return ""
    if model == CONTACT_TIMING_MODEL:
        weekday = predicted_class.partition("-")[0]
        return weekday if weekday in _WEEKDAYS else OTHER_CLASS
    return predicted_class


class _TenantCounter(Counter):
    """A Counter whose first label is the tenant of the request being served.

    The serving step counts ``labels(model, ...)`` without knowing who asked; the tenant comes
    from :func:`~roiml.serving.security.current_tenant` (set when the request was
    authenticated), so the series of two tenants never add up into one.
    """

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        """The child of ``(current tenant, *labelvalues)``; all labels may also be given."""
        if labelvalues and len(labelvalues) == len(self._labelnames) - 1:
            labelvalues = (current_tenant() or _NO_TENANT, *labelvalues)
        return super().labels(*labelvalues, **labelkwargs)


class ServingMetrics:
    """The API's counters and histograms, and this process's prediction errors per tenant and
    model."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        # Model health's error rate reads these: kept here rather than read back out of the
        # Prometheus samples, which are an exposition format, not the app's own state.
        self._errors: Tally[tuple[str, str]] = Tally()
        self._errors_lock = threading.Lock()
        # Collectors added to what /metrics renders (the monitoring gauges), by name.
        self._collectors: dict[str, Collector] = {}
        kwargs = {"registry": self.registry}
        self.requests = Counter(
            "roiml_http_requests_total",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            **kwargs,  # type: ignore[arg-type]
        )
        self.latency = Histogram(
            "roiml_http_request_duration_seconds",
            "HTTP request duration by route template, from the request's arrival to the last "
            "byte of its response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            **kwargs,  # type: ignore[arg-type]
        )
        self.predictions = _TenantCounter(
            "roiml_predictions_total",
            "Predictions served by tenant, model, model version and predicted class (the "
            "contact-timing model's: the recommended weekday).",
            ["tenant", "model", "model_version", "predicted_class"],
            **kwargs,  # type: ignore[arg-type]
        )
        self.prediction_errors = _TenantCounter(
            "roiml_prediction_errors_total",
            "Prediction requests refused or failed, by tenant, model and status code.",
            ["tenant", "model", "status"],
            **kwargs,  # type: ignore[arg-type]
        )
        self.prediction_latency = Histogram(
            "roiml_prediction_duration_seconds",
            "Time to features, prediction and explanation, by model and model version; one "
            "observation per model per request (a batch's whole group).",
            ["model", "model_version"],
            buckets=_LATENCY_BUCKETS,
            **kwargs,  # type: ignore[arg-type]
        )
        self.feature_reads = Counter(
            "roiml_feature_reads_total",
            "Feature vectors by where they came from (online hit, warm, computed, given).",
            ["source"],
            **kwargs,  # type: ignore[arg-type]
        )

    def add_collector(self, name: str, collector: Collector) -> None:
        """Render ``collector``'s series in ``/metrics`` too (in this process's registry, and
        beside every process's files in multi-process mode); one per ``name``, a second
        replaces the first (an app built again over the same metrics)."""
        previous = self._collectors.pop(name, None)
        if previous is not None:
            self.registry.unregister(previous)
        self.registry.register(collector)
        self._collectors[name] = collector

    @property
    def collectors(self) -> Iterable[Collector]:
        """The collectors added with :meth:`add_collector`."""
        return tuple(self._collectors.values())

    def count_errors(self, model: str, status: str, count: int) -> None:
        """``count`` requests of ``model`` refused or failed with HTTP ``status``, for the
        tenant of the request being served."""
        tenant = current_tenant() or _NO_TENANT
        self.prediction_errors.labels(tenant, model, status).inc(count)
        # Batches are served on pool threads: a bare Counter update could lose a count.
        with self._errors_lock:
            self._errors[tenant, model] += count

    def error_count(self, tenant: str, model: str) -> int:
        """Prediction requests of ``tenant`` for ``model`` refused or failed in this process."""
        with self._errors_lock:
            return self._errors[tenant, model]


def render(
    metrics: ServingMetrics,
    multiprocess_dir: str | None,
    tenant: str | None,
    *,
    all_tenants: bool = False,
) -> bytes:
    """The exposition text (this process's registry, or every process's when multi-process),
    with only ``tenant``'s series of the tenant-labelled metrics; ``tenant`` None shows none
    of them, ``all_tenants`` every tenant's (the operator's scraper)."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        # Read by this process from the database, not kept in the processes' files.
        for collector in metrics.collectors:
            registry.register(collector)
        text = generate_latest(registry)
    else:
        text = generate_latest(metrics.registry)
    if all_tenants:
        return text
    wanted = None if tenant is None else tenant.encode()
    kept = []
    for line in text.splitlines(keepends=True):
        if not line.startswith(b"#"):
            match = _TENANT_LABEL.search(line)
            if match is not None and match.group(1) != wanted:
                continue
        kept.append(line)
    return b"".join(kept)
