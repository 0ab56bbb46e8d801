"""Scores of the four models and of their baselines, on the test period, and which direction of
each score is better (shared by the registry's version comparison and monitoring's decay check)."""

from __future__ import annotations

import re

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

__all__ = [
    "LOSS_METRICS",
    "binary_metrics",
    "hit_rate",
    "lower_is_better",
    "multiclass_metrics",
    "regression_metrics",
]

# Metrics where a smaller value is the better model. "logloss" is LightGBM's spelling.
LOSS_METRICS: frozenset[str] = frozenset(
    {"brier", "log_loss", "logloss", "mape", "rmsle", "mae", "mse", "rmse"}
)


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


def binary_metrics(label: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier score, log loss and the base rate."""
    return {
        "roc_auc": float(roc_auc_score(label, probability)),
        "pr_auc": float(average_precision_score(label, probability)),
        "brier": float(brier_score_loss(label, probability)),
        "log_loss": float(log_loss(label, np.clip(probability, 1e-7, 1 - 1e-7))),
        "base_rate": float(np.mean(label)),
    }


def multiclass_metrics(
    label: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None, classes: list[str]
) -> dict[str, float]:
    """Macro-F1, accuracy, per-class F1 and (with probabilities) log loss."""
    out = {
        "macro_f1": float(f1_score(label, predicted, average="macro", labels=range(len(classes)))),
        "accuracy": float(np.mean(label == predicted)),
    }
    per_class = f1_score(label, predicted, average=None, labels=range(len(classes)))
    for name, value in zip(classes, per_class, strict=True):
        out[f"f1_{name.lower()}"] = float(value)
    if probabilities is not None:
        out["log_loss"] = float(log_loss(label, probabilities, labels=range(len(classes))))
    return out


def regression_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> dict[str, float]:
    """MAPE, RMSLE, MAE, R² (and interval coverage and width when given), on prices."""
    out = {
        "mape": float(np.mean(np.abs(predicted - actual) / actual)),
        "rmsle": float(np.sqrt(np.mean((np.log1p(predicted) - np.log1p(actual)) ** 2))),
        "mae": float(mean_absolute_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)),
        "median_ape": float(np.median(np.abs(predicted - actual) / actual)),
    }
    if low is not None and high is not None:
        out["interval_coverage"] = float(np.mean((actual >= low) & (actual <= high)))
        out["interval_relative_width"] = float(np.median((high - low) / predicted))
    return out


def hit_rate(predicted_slot: np.ndarray, slots: list[list[int]]) -> float:
    """Mean over snapshots of the share of their engagements falling in the predicted slot."""
    lengths = np.fromiter((len(s) for s in slots), dtype=np.int64, count=len(slots))
    flat = np.fromiter((x for s in slots for x in s), dtype=np.int64, count=int(lengths.sum()))
    owner = np.repeat(np.arange(len(slots)), lengths)
    hits = np.bincount(owner, weights=flat == predicted_slot[owner], minlength=len(slots))
    return float(np.mean(hits / np.maximum(lengths, 1)))
