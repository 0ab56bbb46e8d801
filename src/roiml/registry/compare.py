"""Comparing two model versions metric by metric, knowing which metrics are losses."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "LOSS_METRICS",
    "MetricComparison",
    "ModelComparison",
    "compare_metric",
    "lower_is_better",
]

# Metrics where a smaller value is the better model. "logloss" is LightGBM's spelling.
LOSS_METRICS: frozenset[str] = frozenset(
    {"brier", "log_loss", "logloss", "mape", "rmsle", "mae", "mse", "rmse"}
)

Better = Literal["v1", "v2", "equal"]


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` is a loss: its name is, starts with, ends with or contains one of
    :data:`LOSS_METRICS` as a whole ``_``-separated part (``test_mae``, ``brier_score``).
    """
    name = metric.lower()
    parts = re.split(r"[^a-z0-9]+", name)
    joined = "_".join(part for part in parts if part)
    return any(
        joined == loss
        or joined.startswith(f"{loss}_")
        or joined.endswith(f"_{loss}")
        or f"_{loss}_" in joined
        for loss in LOSS_METRICS
    )


@dataclass(frozen=True)
class MetricComparison:
    """One metric of two versions: values, ``difference`` = v2 - v1, and which is better."""

    metric: str
    v1: float | None
    v2: float | None
    difference: float | None
    better: Better | None
    lower_is_better: bool


@dataclass(frozen=True)
class ModelComparison:
    """Two versions of one model compared on a list of metrics."""

    name: str
    version1: str
    version2: str
    metrics: dict[str, MetricComparison] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for JSON output."""
        return asdict(self)


def compare_metric(metric: str, v1: float | None, v2: float | None) -> MetricComparison:
    """Compare one metric; a side without the metric (or NaN) makes the verdict None."""
    lower = lower_is_better(metric)
    if v1 is None or v2 is None or math.isnan(v1) or math.isnan(v2):
        return MetricComparison(metric, v1, v2, None, None, lower)
    better: Better
    if v1 == v2:
        better = "equal"
    elif (v2 < v1) == lower:
        better = "v2"
    else:
        better = "v1"
    return MetricComparison(metric, v1, v2, v2 - v1, better, lower)
