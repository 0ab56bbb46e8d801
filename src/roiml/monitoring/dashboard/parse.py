"""Tolerant readers of the JSON columns of ``ml_monitoring``: ``feature_drift`` and
``performance_metrics``.

The monitoring job owns those shapes and they may grow; the dashboard reads what it knows and
skips what it does not, so a new key, a missing one or a malformed entry never breaks the page.
Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from roiml.monitoring.dashboard.schemas import (
    DriftFeature,
    FeatureDistribution,
    PerformanceMetric,
)

__all__ = [
    "LOWER_IS_BETTER",
    "distribution",
    "drift_entry",
    "drift_features",
    "main_metric",
    "performance_metrics",
]

# Error metrics: a realised value above the registered one is the bad direction.
LOWER_IS_BETTER = frozenset(
    {"mae", "mape", "mse", "rmse", "rmsle", "log_loss", "logloss", "brier", "brier_score"}
)
_REALISED_KEYS = ("realised", "realized", "value", "current", "actual")
_REGISTERED_KEYS = ("registered", "reference", "baseline", "training", "at_registration")
_ESTIMATED_KEYS = ("estimated", "cbpe", "estimate")
_STATISTIC_KEYS = ("statistic", "value")
# Methods whose statistic is a p-value (drifted when it is *below* the threshold).
_P_VALUE_METHODS = frozenset({"ks", "chi2", "chi_square"})
# Bookkeeping numbers the job may keep beside the metrics; not metrics to chart.
_NOT_METRICS = frozenset(
    {"count", "labelled", "labeled", "label_coverage", "support", "n", "threshold", "decayed"}
)
# Metric order on the page: the first-class metrics first, the rest alphabetically.
_METRIC_ORDER = ("auc", "roc_auc", "macro_f1", "f1", "accuracy", "precision", "recall")
# The one metric a model's trend follows: the first of these it has (a regressor's relative
# error before its money-valued MAE, which is not comparable across markets).
_MAIN_METRICS = (*_METRIC_ORDER, "mape", "rmsle", "r2", "mae", "rmse")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _first_number(entry: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        number = _number(entry.get(key))
        if number is not None:
            return number
    return None


def _bookkeeping(key: str) -> bool:
    lowered = key.lower()
    return lowered in _NOT_METRICS or lowered.startswith("n_") or lowered.endswith("_count")


def _drift_score(
    entry: Mapping[str, Any], statistic: float | None, threshold: float | None, method: str | None
) -> float | None:
    score = _number(entry.get("score"))
    if score is not None or statistic is None or not threshold:
        return score
    if method in _P_VALUE_METHODS:
        # The statistic is a p-value: smaller is more drifted, so the ratio is inverted.
        return min(threshold / max(statistic, 1e-300), 1e6)
    return statistic / threshold


def drift_entry(name: str, entry: Any) -> DriftFeature:
    """One ``feature_drift`` value (or the ``prediction_score`` entry) as a row.

    The job's own ``score`` (statistic over threshold, inverted for p-value methods) is used
    when present, else computed the same way; an entry that is a bare number is the statistic.
    """
    if not isinstance(entry, Mapping):
        statistic = _number(entry)
        return DriftFeature(feature=name, statistic=statistic)
    statistic = _first_number(entry, _STATISTIC_KEYS)
    threshold = _number(entry.get("threshold"))
    method = str(entry["method"]) if entry.get("method") is not None else None
    score = _drift_score(entry, statistic, threshold, method)
    verdict = entry.get("drifted", entry.get("drift_detected"))
    drifted = verdict if isinstance(verdict, bool) else (score is not None and score > 1.0)
    status = entry.get("status")
    return DriftFeature(
        feature=name,
        method=method,
        statistic=statistic,
        threshold=threshold,
        score=score,
        drifted=drifted,
        status=str(status) if status is not None else None,
    )


def drift_features(feature_drift: Any) -> list[DriftFeature]:
    """``{feature: {method, statistic, threshold, drifted, score, ...}}`` as rows, most drifted
    first: drifted features, then by score (the method-free ``statistic / threshold``), then by
    name. An entry the job could not score (``{"status": "NO_REFERENCE"}``) is kept, unscored,
    at the end, so a feature that was not judged is visible rather than silently missing.
    """
    if not isinstance(feature_drift, Mapping):
        return []
    rows = [drift_entry(str(name), entry) for name, entry in feature_drift.items()]
    rows.sort(
        key=lambda row: (not row.drifted, row.score is None, -(row.score or 0.0), row.feature)
    )
    return rows


def performance_metrics(
    performance: Any, registered_fallback: Mapping[str, Any] | None = None
) -> list[PerformanceMetric]:
    """Realised, registered and estimated values per metric, in a stable, readable order.

    Reads the documented ``{"realised": {metric: x}, "registered": {...}, "estimated": {...}}``
    (docs/MONITORING.md), and, from older or hand-written rows, ``{metric: {"realised": x,
    "registered": y}}`` (either spelling, a few synonyms) or ``{metric: x}`` (realised only).
    A registered value missing from the row is taken from ``registered_fallback`` (the
    ``ml_models.metrics`` of the version) under the same metric name. Metrics with no number
    at all are dropped.
    """
    if not isinstance(performance, Mapping):
        performance = {}
    by_metric: dict[str, dict[str, float | None]] = {}

    def put(metric: str, kind: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            by_metric.setdefault(metric, {})[kind] = number

    kinds = (
        ("realised", _REALISED_KEYS),
        ("registered", _REGISTERED_KEYS),
        ("estimated", _ESTIMATED_KEYS),
    )
    transposed = {
        kind: entry
        for kind, keys in kinds
        for key, entry in performance.items()
        if key in keys and isinstance(entry, Mapping)
    }
    if transposed:
        # The documented shape: one mapping per kind; every other key is bookkeeping.
        for kind, entry in transposed.items():
            for metric, value in entry.items():
                put(str(metric), kind, value)
    else:
        for key, entry in performance.items():
            if _bookkeeping(str(key)):
                continue
            if isinstance(entry, Mapping):
                for kind, keys in kinds:
                    put(str(key), kind, _first_number(entry, keys))
            else:
                put(str(key), "realised", entry)
    if registered_fallback:
        for metric, values in by_metric.items():
            if "registered" not in values:
                put(metric, "registered", registered_fallback.get(metric))
    baseline = performance.get("estimated_reference")
    if isinstance(baseline, Mapping) and isinstance(baseline.get("metrics"), Mapping):
        for metric, value in baseline["metrics"].items():
            if str(metric) in by_metric:
                put(str(metric), "estimated_reference", value)

    def order(metric: str) -> tuple[int, str]:
        rank = _METRIC_ORDER.index(metric) if metric in _METRIC_ORDER else len(_METRIC_ORDER)
        return rank, metric

    return [
        PerformanceMetric(
            metric=metric,
            realised=values.get("realised"),
            registered=values.get("registered"),
            estimated=values.get("estimated"),
            estimated_reference=values.get("estimated_reference"),
            lower_is_better=metric.lower() in LOWER_IS_BETTER,
        )
        for metric, values in sorted(by_metric.items(), key=lambda item: order(item[0]))
    ]


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    numbers = [_number(v) for v in value]
    return None if any(n is None for n in numbers) else [n for n in numbers if n is not None]


def distribution(entry: Any) -> FeatureDistribution | None:
    """The ``distribution`` of a ``feature_drift`` entry (roiml.monitoring.drift's
    ``distribution_summary``), or ``None`` when absent or inconsistent (rows written before it
    existed, a hand-written entry): a malformed shape is not drawn rather than drawn wrong."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("distribution"), Mapping):
        return None
    shape = entry["distribution"]
    reference, current = _numbers(shape.get("reference")), _numbers(shape.get("current"))
    edges, levels = _numbers(shape.get("edges")), _numbers(shape.get("levels"))
    if reference is None or current is None or len(reference) != len(current):
        return None
    if edges is not None and len(edges) == len(reference) + 1:
        quantiles = shape.get("quantiles")
        quantiles = quantiles if isinstance(quantiles, Mapping) else {}
        p = _numbers(quantiles.get("p")) or []
        ref_q = _numbers(quantiles.get("reference")) or []
        cur_q = _numbers(quantiles.get("current")) or []
        if not len(p) == len(ref_q) == len(cur_q):
            p, ref_q, cur_q = [], [], []
        return FeatureDistribution(
            edges=edges,
            reference=reference,
            current=current,
            p=p,
            reference_quantiles=ref_q,
            current_quantiles=cur_q,
        )
    if levels is not None and len(levels) == len(reference):
        return FeatureDistribution(levels=levels, reference=reference, current=current)
    return None


def main_metric(performance: Any, name: str | None = None) -> tuple[str, float, bool] | None:
    """The metric a model's trend follows (``name``, else the first of the main metrics the
    row has), its value and whether it is the label-free estimate (realised when feedback gave
    one, else estimated): ``(name, value, estimated)``."""
    metrics = performance_metrics(performance)
    by_name = {m.metric: m for m in metrics}
    candidates = (name,) if name else (*_MAIN_METRICS, *sorted(by_name))
    for candidate in candidates:
        metric = by_name.get(candidate)
        if metric is None:
            continue
        if metric.realised is not None:
            return candidate, metric.realised, False
        if metric.estimated is not None:
            return candidate, metric.estimated, True
    return None
