"""Realised performance from labels, estimated performance from calibrated probabilities.

Pure NumPy (and scikit-learn's metrics), no I/O. Classifier metrics: ``auc``, ``accuracy``,
``precision``, ``recall``, ``f1`` (macro over classes for the multi-class models); regressor
metrics: ``mae``, ``mape``, ``r2``.

Estimation follows NannyML's confidence-based performance estimation (CBPE): if a model's
probabilities are calibrated, row i with probability p_i of the class it predicts is right with
probability p_i, so the expected confusion matrix is a sum of probabilities, and every metric
built on it can be estimated before any label arrives. The estimate is as good as the
calibration, and it cannot see concept drift (the same inputs now meaning another outcome):
that is what the realised figures, once labels come, are for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from sklearn.metrics import roc_auc_score

from roiml.models.metrics import lower_is_better

__all__ = [
    "compare_with_registered",
    "estimated_binary",
    "estimated_multiclass",
    "realised_binary",
    "realised_multiclass",
    "realised_regression",
]


def realised_binary(
    label: np.ndarray, probability: np.ndarray, decision: np.ndarray
) -> dict[str, float | None]:
    """AUC of ``probability``, and accuracy/precision/recall/F1 of the yes/no ``decision``."""
    label = np.asarray(label, dtype=bool)
    decision = np.asarray(decision, dtype=bool)
    tp = float(np.sum(label & decision))
    fp = float(np.sum(~label & decision))
    fn = float(np.sum(label & ~decision))
    tn = float(np.sum(~label & ~decision))
    auc = float(roc_auc_score(label, probability)) if 0 < label.sum() < label.size else None
    return {"auc": auc, **_from_confusion(tp, fp, fn, tn)}


def estimated_binary(probability: np.ndarray, decision: np.ndarray) -> dict[str, float | None]:
    """CBPE of :func:`realised_binary`'s metrics from calibrated probabilities alone."""
    p = np.asarray(probability, dtype=np.float64)
    decision = np.asarray(decision, dtype=bool)
    if p.size == 0:
        return dict.fromkeys(("auc", "accuracy", "precision", "recall", "f1"))
    tp = float(np.sum(p[decision]))
    fp = float(np.sum(1 - p[decision]))
    fn = float(np.sum(p[~decision]))
    tn = float(np.sum(1 - p[~decision]))
    return {"auc": _expected_auc(p, p), **_from_confusion(tp, fp, fn, tn)}


def realised_multiclass(
    label: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray | None,
    n_classes: int,
) -> dict[str, float | None]:
    """Accuracy, macro precision/recall/F1 and (with probabilities) one-vs-rest macro AUC.

    ``label`` and ``predicted`` are class indices; ``probabilities`` is rows x classes.
    """
    label = np.asarray(label, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if label.size == 0:
        return dict.fromkeys(("auc", "accuracy", "precision", "recall", "f1"))
    classes = np.arange(n_classes)
    hit = label[:, None] == classes[None, :]
    chosen = predicted[:, None] == classes[None, :]
    tp = np.sum(hit & chosen, axis=0).astype(np.float64)
    fp = np.sum(~hit & chosen, axis=0).astype(np.float64)
    fn = np.sum(hit & ~chosen, axis=0).astype(np.float64)
    out = _macro(tp, fp, fn, present=hit.any(axis=0) | chosen.any(axis=0))
    out["accuracy"] = float(np.mean(label == predicted))
    out["auc"] = None
    if probabilities is not None:
        aucs = [
            float(roc_auc_score(hit[:, k], probabilities[:, k]))
            for k in range(n_classes)
            if 0 < hit[:, k].sum() < label.size
        ]
        out["auc"] = float(np.mean(aucs)) if aucs else None
    return out


def estimated_multiclass(
    predicted: np.ndarray, probabilities: np.ndarray | None, confidence: np.ndarray
) -> dict[str, float | None]:
    """CBPE for a multi-class model: the expected confusion per class from the probabilities.

    Without per-class probabilities (the contact-timing model logs only the chosen slot's
    probability as ``confidence``) only accuracy can be estimated: the mean confidence.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.size == 0:
        return dict.fromkeys(("auc", "accuracy", "precision", "recall", "f1"))
    if probabilities is None:
        return {
            "auc": None,
            "accuracy": float(np.mean(confidence)),
            "precision": None,
            "recall": None,
            "f1": None,
        }
    p = np.asarray(probabilities, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.int64)
    chosen = predicted[:, None] == np.arange(p.shape[1])[None, :]
    tp = np.sum(np.where(chosen, p, 0.0), axis=0)
    fp = np.sum(np.where(chosen, 1 - p, 0.0), axis=0)
    fn = np.sum(np.where(chosen, 0.0, p), axis=0)
    out = _macro(tp, fp, fn, present=(tp + fp + fn) > 0)
    out["accuracy"] = float(np.mean(p[np.arange(len(predicted)), predicted]))
    aucs = [_expected_auc(p[:, k], p[:, k]) for k in range(p.shape[1])]
    known = [a for a in aucs if a is not None]
    out["auc"] = float(np.mean(known)) if known else None
    return out


def realised_regression(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """MAE, MAPE (over non-zero actuals) and R² of the predicted values."""
    actual = np.asarray(actual, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if actual.size == 0:
        return {"mae": None, "mape": None, "r2": None}
    error = predicted - actual
    nonzero = actual != 0
    spread = float(np.sum((actual - actual.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(error))),
        "mape": float(np.mean(np.abs(error[nonzero]) / np.abs(actual[nonzero])))
        if nonzero.any()
        else None,
        "r2": 1.0 - float(np.sum(error**2)) / spread if spread > 0 else None,
    }


def compare_with_registered(
    current: Mapping[str, float | None],
    registered: Mapping[str, float | None],
    tolerance: float,
) -> tuple[dict[str, float], list[str]]:
    """Per metric present on both sides: current minus registered; and the metrics that decayed.

    A metric decays when it is worse than at registration by more than ``tolerance`` of the
    registered value (relative: an AUC of 0.76 decays below 0.684 at 0.1; a MAPE of 0.26 above
    0.286). R² is shown but not judged: relative change of a value near 0 means nothing.
    """
    change: dict[str, float] = {}
    decayed: list[str] = []
    for name, now in current.items():
        then = registered.get(name)
        if now is None or then is None or not math.isfinite(now) or not math.isfinite(then):
            continue
        change[name] = now - then
        if name == "r2" or then == 0:
            continue
        worse = (now - then) if lower_is_better(name) else (then - now)
        if worse > tolerance * abs(then):
            decayed.append(name)
    return change, decayed


def _from_confusion(tp: float, fp: float, fn: float, tn: float) -> dict[str, float | None]:
    total = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp > 0 else None
    recall = tp / (tp + fn) if tp + fn > 0 else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else None
    return {
        "accuracy": (tp + tn) / total if total > 0 else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _macro(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, present: np.ndarray
) -> dict[str, float | None]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    if not present.any():
        return {"precision": None, "recall": None, "f1": None}
    return {
        "precision": float(np.mean(precision[present])),
        "recall": float(np.mean(recall[present])),
        "f1": float(np.mean(f1[present])),
    }


def _expected_auc(score: np.ndarray, probability: np.ndarray) -> float | None:
    """CBPE's ROC AUC: each row counts as p positive and 1 - p negative at its score.

    The expected true- and false-positive rates at each threshold are cumulative sums of p and
    1 - p over the rows sorted by score; the area is taken with the trapezoid rule, tied scores
    forming one step.
    """
    positive = float(np.sum(probability))
    negative = float(np.sum(1 - probability))
    if positive <= 0 or negative <= 0:
        return None
    order = np.argsort(-score, kind="stable")
    s, p = score[order], probability[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tpr = np.r_[0.0, np.cumsum(p)[ends] / positive]
    fpr = np.r_[0.0, np.cumsum(1 - p)[ends] / negative]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))
