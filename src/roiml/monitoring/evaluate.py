"""Each model's realised and estimated performance over a period, beside its registered figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from roiml.db.enums import ModelType
from roiml.monitoring.performance import (
    compare_with_registered,
    estimated_binary,
    estimated_multiclass,
    realised_binary,
    realised_multiclass,
    realised_regression,
)
from roiml.monitoring.period import PeriodPredictions

__all__ = ["EstimateBaseline", "Labels", "assess_performance", "estimate", "registered_metrics"]

# Feedback a caller may give the move model as actual_class, meaning "moved".
_MOVED = frozenset({"MOVE", "MOVED", "1", "TRUE", "YES", "SELL", "BUY", "HIGH"})
# The registry's metric names -> the monitoring names, per model.
_REGISTERED: dict[ModelType, dict[str, tuple[str, ...]]] = {
    ModelType.MOVE_PROBABILITY: {"auc": ("roc_auc", "auc"), "precision": ("high_precision",)},
    ModelType.TRANSACTION_TYPE: {"f1": ("macro_f1", "f1"), "accuracy": ("accuracy",)},
    ModelType.CONTACT_TIMING: {"accuracy": ("hit_rate",)},
    ModelType.PROPERTY_VALUE: {"mae": ("mae",), "mape": ("mape",), "r2": ("r2",)},
}


@dataclass
class Labels:
    """Row-aligned truth: a value (NaN: none) and a class (None: none), with its source."""

    value: np.ndarray
    cls: list[str | None]
    from_outcomes: int = 0


def registered_metrics(model_type: ModelType, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The registration-time figures under the monitoring's metric names."""
    out: dict[str, float] = {}
    for name, keys in _REGISTERED[model_type].items():
        for key in keys:
            value = metrics.get(key)
            if isinstance(value, int | float) and np.isfinite(value):
                out[name] = float(value)
                break
    return out


def assess_performance(
    model_type: ModelType,
    period: PeriodPredictions,
    labels: Labels,
    classes: Sequence[str],
    registered: Mapping[str, float],
    tolerance: float,
    min_labels: int,
    baseline: EstimateBaseline | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The ``performance_metrics`` JSON (without drift parts) and the decayed metric names.

    Realised metrics (enough labels) are judged against the registered ones. An estimate is
    judged against ``baseline``, the same estimate over the reference the period's drift is
    judged against, when given: the registered figures were measured on the test split, whose
    mix of movers and non-movers is not a day's population, and an estimate of precision or F1
    depends on that mix. On a 2,000-homeowner world the move model's estimated precision sat 17 %
    under its registered figure from the first day on, with nothing changed: a DECAY every day.
    """
    notes: list[str] = []
    if model_type is ModelType.PROPERTY_VALUE:
        kind = "regressor"
        known = np.isfinite(labels.value)
        realised = realised_regression(labels.value[known], period.predicted_value[known])
        estimated: dict[str, float | None] = {}
        labelled = int(known.sum())
        class_mix: dict[str, float] = {}
    else:
        kind = "classifier"
        realised, estimated, labelled = _classifier(model_type, period, labels, classes)
        class_mix = _class_mix(period.predicted_class)
    if labelled == 0:
        realised = {}
        notes.append("no feedback or outcomes yet: realised metrics are empty")
    if model_type is ModelType.CONTACT_TIMING:
        notes.append("contact timing logs only the chosen slot's probability: CBPE is accuracy")
    enough = labelled >= min_labels
    if realised and enough:
        judged, source = realised, "realised"
    elif estimated:
        judged, source = estimated, "estimated"
        if labelled:
            notes.append(
                f"{labelled} labelled prediction(s), fewer than {min_labels}: "
                "decay judged on the estimate"
            )
    else:
        judged, source = {}, None
    against: Mapping[str, float] = registered
    if source == "estimated" and baseline is not None and baseline.metrics:
        # The registered metrics name what the model is judged on (an AUC and a precision for
        # the move model); the others an estimate also gives are context, not verdicts.
        against = {k: v for k, v in baseline.metrics.items() if not registered or k in registered}
        notes.append(f"the estimate is judged against the same estimate over {baseline.over}")
    change, decayed = compare_with_registered(judged, against, tolerance)
    if not registered:
        notes.append("no registered metrics to compare with")
    return (
        {
            "kind": kind,
            "labelled": labelled,
            "labelled_from_outcomes": labels.from_outcomes,
            "label_coverage": labelled / period.count if period.count else None,
            "realised": realised,
            "estimated": estimated,
            "registered": dict(registered),
            "estimated_reference": baseline.as_json() if baseline is not None else None,
            "decay": change,
            "decay_source": source,
            "decayed": bool(decayed),
            "decayed_metrics": decayed,
            "class_mix": class_mix,
            "notes": notes,
        },
        decayed,
    )


@dataclass(frozen=True)
class EstimateBaseline:
    """The estimated metrics of the rows a period is compared with, and what those rows are."""

    metrics: dict[str, float]
    over: str  # e.g. "14,000 predictions served 2024-11-15 to 2024-11-21, moved to 2024-11-22"

    def as_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "over": self.over}


def estimate(
    model_type: ModelType,
    predicted_value: np.ndarray,
    predicted_class: Sequence[str | None],
    probabilities: np.ndarray | None,
    confidence: np.ndarray,
    classes: Sequence[str],
) -> dict[str, float | None]:
    """CBPE of a classifier's metrics from its answers alone (no labels); ``probabilities``
    are rows x ``classes`` (ignored for the contact-timing model, which logs only the chosen
    slot's probability); the value model has none."""
    if model_type is ModelType.PROPERTY_VALUE:
        return {}
    if model_type is ModelType.MOVE_PROBABILITY:
        return estimated_binary(predicted_value, _in(predicted_class, ["HIGH"]))
    names = list(classes) or sorted({c for c in predicted_class if c is not None})
    names += sorted({c for c in predicted_class if c is not None} - set(names))
    if model_type is ModelType.CONTACT_TIMING or not classes:
        probabilities = None
    elif probabilities is not None and probabilities.shape[1] < len(names):
        probabilities = np.pad(probabilities, ((0, 0), (0, len(names) - probabilities.shape[1])))
    predicted = np.maximum(_index(predicted_class, names), 0)
    return estimated_multiclass(predicted, probabilities, np.nan_to_num(confidence))


def _classifier(
    model_type: ModelType,
    period: PeriodPredictions,
    labels: Labels,
    classes: Sequence[str],
) -> tuple[dict[str, float | None], dict[str, float | None], int]:
    estimated = estimate(
        model_type,
        period.predicted_value,
        period.predicted_class,
        period.probability_matrix(classes) if classes else None,
        period.confidence,
        classes,
    )
    if model_type is ModelType.MOVE_PROBABILITY:
        decision = _in(period.predicted_class, ["HIGH"])
        has_value = np.isfinite(labels.value)
        moved = _in(labels.cls, sorted(_MOVED), upper=True)
        truth = np.where(has_value, np.nan_to_num(labels.value) >= 0.5, moved)
        known = has_value | _in(labels.cls, None)
        realised = realised_binary(truth[known], period.predicted_value[known], decision[known])
        return realised, estimated, int(known.sum())
    names = list(classes) or sorted({c for c in period.predicted_class if c is not None})
    names += sorted({c for c in labels.cls if c is not None} - set(names))
    names += sorted({c for c in period.predicted_class if c is not None} - set(names))
    predicted = _index(period.predicted_class, names)
    truth = _index(labels.cls, names)
    known = truth >= 0
    probabilities = period.probability_matrix(classes) if classes else None
    if probabilities is not None and probabilities.shape[1] < len(names):
        probabilities = np.pad(probabilities, ((0, 0), (0, len(names) - probabilities.shape[1])))
    realised = realised_multiclass(
        truth[known],
        predicted[known],
        probabilities[known] if probabilities is not None else None,
        len(names),
    )
    return realised, estimated, int(known.sum())


def _in(
    values: Sequence[str | None], allowed: Sequence[str] | None, upper: bool = False
) -> np.ndarray:
    """Per value: in ``allowed`` (None: not null), as a bool array; computed by Arrow."""
    array = pa.array(values, pa.string())
    if upper:
        array = pc.utf8_upper(array)
    if allowed is None:
        return np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)
    hit = pc.fill_null(pc.is_in(array, value_set=pa.array(allowed, pa.string())), False)
    return np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)


def _index(values: Sequence[str | None], names: Sequence[str]) -> np.ndarray:
    """Per value: its position in ``names``, -1 when null or absent."""
    found = pc.index_in(pa.array(values, pa.string()), value_set=pa.array(names, pa.string()))
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _class_mix(predicted: Sequence[str | None]) -> dict[str, float]:
    values = [c for c in predicted if c is not None]
    if not values:
        return {}
    names, counts = np.unique(np.array(values), return_counts=True)
    return {str(n): float(c) / len(values) for n, c in zip(names, counts, strict=True)}
