"""Vectorised answers of a trained model: value, class, confidence, and exact explanations.

One call handles any number of rows (the API's single and batch routes both come here), with one
``predict`` and one ``pred_contrib`` call per booster, never one per row. A single row, the API's
common case, goes through LightGBM's single-row fast path instead (same numbers, a fraction of
the overhead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from roiml.db.enums import ModelType
from roiml.models.artifact import ModelArtifact
from roiml.models.explain import Contributions, contributions, explainer
from roiml.models.single_row import single_row_predictor

__all__ = ["Predictions", "predict", "prepare", "value_interval"]

_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass
class Predictions:
    """Per row: the answer, its class and confidence, class probabilities, and contributions.

    ``contributions`` explain the raw score behind ``predicted_value`` (log-odds for the
    classifiers, log price for the value model), one column per ``feature_names`` entry.
    """

    predicted_value: np.ndarray
    predicted_class: list[str | None]
    confidence: np.ndarray
    contributions: Contributions | None
    probabilities: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    details: dict[str, np.ndarray] = field(default_factory=dict)


def predict(artifact: ModelArtifact, matrix: np.ndarray, explain: bool = True) -> Predictions:
    """Predict (and explain) every row of ``matrix`` (columns in ``artifact.feature_names``)."""
    handler = _HANDLERS[artifact.model_type]
    return handler(artifact, np.ascontiguousarray(matrix, dtype=np.float64), explain)


def prepare(artifact: ModelArtifact) -> None:
    """Build the explanation tables of every booster that :func:`predict` explains, and every
    booster's single-row predictor, so that the first request does not pay for them (the API
    calls this when it loads a model)."""
    for name in _EXPLAINED[artifact.model_type]:
        explainer(artifact.boosters[name])
    for booster in artifact.boosters.values():
        single_row_predictor(booster)


def _raw(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] == 1:
        return single_row_predictor(booster).predict(
            np.ascontiguousarray(matrix[0], dtype=np.float64)
        )
    # One thread: an OpenMP team costs more than it saves on the API's few rows, and on a busy
    # machine its spinning threads made one row's predict take ~5 ms of CPU instead of ~0.1.
    return np.asarray(booster.predict(matrix, num_threads=1))


def _move(artifact: ModelArtifact, matrix: np.ndarray, explain: bool) -> Predictions:
    booster = artifact.boosters["main"]
    probability = _raw(booster, matrix)
    cuts = artifact.extra["thresholds"]
    medium_or_low = np.where(probability >= cuts["MEDIUM"], "MEDIUM", "LOW")
    labels = np.where(probability >= cuts["HIGH"], "HIGH", medium_or_low)
    return Predictions(
        predicted_value=probability,
        predicted_class=labels.tolist(),
        # The probability of the outcome the class points to (moving for HIGH, staying for LOW).
        confidence=np.maximum(probability, 1 - probability),
        contributions=contributions(booster, matrix) if explain else None,
        probabilities=np.column_stack([1 - probability, probability]),
        classes=["STAY", "MOVE"],
    )


def _transaction(artifact: ModelArtifact, matrix: np.ndarray, explain: bool) -> Predictions:
    booster = artifact.boosters["main"]
    probabilities = _raw(booster, matrix)
    weights = np.asarray(artifact.extra.get("decision_weights", [1.0] * len(artifact.classes)))
    chosen = np.argmax(probabilities * weights, axis=1)
    picked = probabilities[np.arange(len(chosen)), chosen]
    return Predictions(
        predicted_value=picked,
        predicted_class=[artifact.classes[i] for i in chosen],
        confidence=picked,
        contributions=contributions(booster, matrix, chosen) if explain else None,
        probabilities=probabilities,
        classes=list(artifact.classes),
    )


def _timing(artifact: ModelArtifact, matrix: np.ndarray, explain: bool) -> Predictions:
    day_model, hour_model = artifact.boosters["weekday"], artifact.boosters["hour"]
    p_day = _raw(day_model, matrix)
    p_hour = _raw(hour_model, matrix)
    day, hour = np.argmax(p_day, axis=1), np.argmax(p_hour, axis=1)
    rows = np.arange(len(day))
    # The chance that an engagement of the coming weeks lands in the recommended slot.
    expected = p_day[rows, day] * p_hour[rows, hour]
    explained = None
    if explain:
        by_day = contributions(day_model, matrix, day)
        by_hour = contributions(hour_model, matrix, hour)
        # One ranking for the slot: each feature's push towards the chosen weekday plus its push
        # towards the chosen hour (each exact SHAP in its own booster's log-odds).
        explained = Contributions(by_day.values + by_hour.values, by_day.base + by_hour.base)
    return Predictions(
        predicted_value=expected,
        predicted_class=[f"{_WEEKDAYS[d]}-{h:02d}" for d, h in zip(day, hour, strict=True)],
        confidence=expected,
        contributions=explained,
        details={
            "best_weekday": day,
            "best_hour": hour,
            "weekday_probability": p_day[rows, day],
            "hour_probability": p_hour[rows, hour],
        },
    )


def _value(artifact: ModelArtifact, matrix: np.ndarray, explain: bool) -> Predictions:
    main = artifact.boosters["main"]
    log_value = _raw(main, matrix)
    value = np.exp(log_value)
    low, high = value_interval(
        artifact.boosters, matrix, value, float(artifact.extra.get("interval_margin", 0.0))
    )
    # Confidence: 1 minus the interval's half-width relative to the value (1 = a point).
    confidence = np.clip(1 - (high - low) / (2 * value), 0.0, 1.0)
    return Predictions(
        predicted_value=value,
        predicted_class=[None] * len(value),
        confidence=confidence,
        contributions=contributions(main, matrix) if explain else None,
        details={"interval_low": low, "interval_high": high},
    )


def value_interval(
    boosters: dict[str, Any], matrix: np.ndarray, value: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """The value model's interval: its quantile boosters widened by the conformal ``margin``.

    ``margin`` (log price) is fitted on the validation sales at training time (conformalised
    quantile regression), so the interval covers its nominal share there rather than the raw
    quantile boosters' narrower one; the interval always contains the point value.
    """
    low = np.exp(_raw(boosters["low"], matrix) - margin)
    high = np.exp(_raw(boosters["high"], matrix) + margin)
    return np.minimum(low, value), np.maximum(high, value)


_HANDLERS = {
    ModelType.MOVE_PROBABILITY: _move,
    ModelType.TRANSACTION_TYPE: _transaction,
    ModelType.CONTACT_TIMING: _timing,
    ModelType.PROPERTY_VALUE: _value,
}

_EXPLAINED = {
    ModelType.MOVE_PROBABILITY: ("main",),
    ModelType.TRANSACTION_TYPE: ("main",),
    ModelType.CONTACT_TIMING: ("weekday", "hour"),
    ModelType.PROPERTY_VALUE: ("main",),
}
