"""Exact per-prediction explanations from LightGBM's own TreeSHAP (``pred_contrib``).

For a row, the contributions plus the base value sum to the model's raw score (log-odds for a
binary model, the class's raw score for a multiclass one, the prediction for a regression).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

__all__ = ["Contributions", "contributions", "top_features"]


@dataclass(frozen=True)
class Contributions:
    """SHAP values per row and feature, and each row's base value (expected raw score)."""

    values: np.ndarray  # (rows, features)
    base: np.ndarray  # (rows,)


def contributions(
    booster: lgb.Booster, matrix: np.ndarray, class_index: np.ndarray | int | None = None
) -> Contributions:
    """TreeSHAP values of ``matrix``'s rows; for a multiclass booster, of ``class_index``
    (one class for all rows, or one per row)."""
    raw = np.asarray(booster.predict(matrix, pred_contrib=True))
    width = matrix.shape[1] + 1
    if raw.shape[1] == width:
        return Contributions(raw[:, :-1], raw[:, -1])
    per_class = raw.reshape(raw.shape[0], -1, width)
    rows = np.arange(raw.shape[0])
    chosen = np.broadcast_to(np.asarray(0 if class_index is None else class_index), rows.shape)
    picked = per_class[rows, chosen]
    return Contributions(picked[:, :-1], picked[:, -1])


def top_features(
    values: np.ndarray, feature_names: list[str], inputs: np.ndarray, k: int = 5
) -> list[list[tuple[str, float, float | None]]]:
    """Per row, the ``k`` features with the largest absolute contribution:
    ``(name, contribution, value)``, value None where the input was missing."""
    k = min(k, values.shape[1])
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    out = []
    for row, columns in enumerate(order):
        out.append(
            [
                (
                    feature_names[c],
                    float(values[row, c]),
                    None if np.isnan(inputs[row, c]) else float(inputs[row, c]),
                )
                for c in columns
            ]
        )
    return out
