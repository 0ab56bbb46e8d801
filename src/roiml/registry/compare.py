"""Comparing two model versions metric by metric, knowing which metrics are losses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Which direction of a metric is better is the models' knowledge (monitoring uses it too);
# re-exported, since comparing versions is where the registry's callers look for it.
from roiml.models.metrics import LOSS_METRICS, lower_is_better

__all__ = [
    "LOSS_METRICS",
    "MetricComparison",
    "ModelComparison",
    "compare_metric",
    "lower_is_better",
]

Better = Literal["v1", "v2", "equal"]


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
