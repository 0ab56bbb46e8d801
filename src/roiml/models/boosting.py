"""One LightGBM fit with early stopping on the validation period, reproducible by seed."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

__all__ = ["fit_booster", "refit_booster", "refit_rounds", "sample_rows", "validation_loss"]


def fit_booster(
    params: dict[str, Any],
    feature_names: list[str],
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    num_boost_round: int,
    early_stopping_rounds: int,
    weight: np.ndarray | None = None,
) -> lgb.Booster:
    """Train on ``train`` = (X, y), stop on ``valid``'s loss, and return the booster cut at its
    best iteration (reloaded from text, so it is exactly what a saved model predicts)."""
    train_set = lgb.Dataset(
        train[0], train[1], weight=weight, feature_name=feature_names, free_raw_data=True
    )
    valid_set = lgb.Dataset(valid[0], valid[1], reference=train_set, feature_name=feature_names)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    best = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    # Kept for tuning (roiml tune scores a trial by it, never by the test period).
    best.best_score = booster.best_score
    return best


def refit_rounds(best_iteration: int, train_rows: int, valid_rows: int) -> int:
    """Rounds for a refit on train + validation: the early-stopped count scaled by the rows
    added (more rows carry more rounds before over-fitting at the same learning rate)."""
    return max(1, round(best_iteration * (train_rows + valid_rows) / max(train_rows, 1)))


def refit_booster(
    params: dict[str, Any],
    feature_names: list[str],
    data: tuple[np.ndarray, np.ndarray],
    rounds: int,
    chosen_by: lgb.Booster,
) -> lgb.Booster:
    """Fit ``rounds`` rounds on ``data`` (train and validation together), no early stopping;
    the result keeps ``chosen_by``'s validation score, the one its rounds were chosen on."""
    train_set = lgb.Dataset(data[0], data[1], feature_name=feature_names, free_raw_data=True)
    booster = lgb.train(params, train_set, num_boost_round=rounds)
    refit = lgb.Booster(model_str=booster.model_to_string())
    refit.best_score = chosen_by.best_score
    return refit


def validation_loss(booster: lgb.Booster) -> float:
    """The booster's loss on the validation period at its best iteration (first metric)."""
    scores = booster.best_score.get("valid_0", {})
    if not scores:
        raise ValueError("this booster has no validation score: fit it with fit_booster")
    return float(next(iter(scores.values())))


def sample_rows(count: int, limit: int, seed: int) -> np.ndarray:
    """Indices of at most ``limit`` of ``count`` rows, the same ones for the same seed."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))
