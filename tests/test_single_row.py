"""The single-row fast path answers exactly what ``Booster.predict`` answers for that row."""

from __future__ import annotations

import gc
import threading
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from roiml.models.single_row import SingleRowPredictor

FEATURES = 8


def _data(rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(rows, FEATURES))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the default side
    x[:, 3] = np.round(x[:, 3])  # ties at split thresholds, and exact zeros
    return x, np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) + rng.normal(scale=0.5, size=rows)


def _booster(objective: str, rounds: int = 30, **extra: Any) -> lgb.Booster:
    x, y = _data()
    targets = {
        "regression": y,
        "binary": (y > 0).astype(float),
        "multiclass": np.digitize(y, [-0.7, 0.0, 0.7]).astype(float),
    }
    params: dict[str, Any] = {"objective": objective, "verbose": -1, "num_threads": 1, "seed": 1}
    if objective == "multiclass":
        params["num_class"] = 4
    return lgb.train(params | extra, lgb.Dataset(x, targets[objective]), num_boost_round=rounds)


@pytest.fixture(scope="module", params=["regression", "binary", "multiclass"])
def booster(request: pytest.FixtureRequest) -> lgb.Booster:
    return _booster(request.param)


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"num_iteration": 7},
        {"start_iteration": 5, "num_iteration": 10},
        {"raw_score": True},
        {"raw_score": True, "num_iteration": 3},
        {"pred_leaf": True},
        {"pred_contrib": True},
        {"pred_contrib": True, "num_iteration": 12},
    ],
    ids=repr,
)
def test_every_row_is_bit_equal_to_booster_predict(
    booster: lgb.Booster, arguments: dict[str, Any]
) -> None:
    x, _ = _data()
    predictor = SingleRowPredictor(booster, **arguments)
    for row in x[:60]:
        ours = predictor.predict(row)
        theirs = booster.predict(row[None, :], **arguments)
        assert ours.dtype == theirs.dtype
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs, strict=True)


def test_the_best_iteration_is_used_as_booster_predict_uses_it() -> None:
    x, y = _data()
    train, valid = lgb.Dataset(x[:400], y[:400]), lgb.Dataset(x[400:], y[400:])
    params = {"objective": "regression", "verbose": -1, "num_threads": 1, "learning_rate": 0.3}
    booster = lgb.train(
        params,
        train,
        num_boost_round=200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(5, verbose=False)],
        keep_training_booster=True,  # else the booster is cut at its best iteration
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    best, every = SingleRowPredictor(booster), SingleRowPredictor(booster, num_iteration=-1)
    for row in x[:30]:
        np.testing.assert_array_equal(best.predict(row), booster.predict(row[None, :]))
        np.testing.assert_array_equal(
            every.predict(row), booster.predict(row[None, :], num_iteration=-1)
        )
    assert not np.array_equal(best.predict(x[0]), every.predict(x[0]))


def test_other_predictions_on_the_booster_do_not_change_its_iterations() -> None:
    # LightGBM keeps the iteration range on the booster: a FastConfig on the caller's booster
    # would follow the last Booster.predict's num_iteration.
    booster = _booster("regression")
    x, _ = _data()
    predictor = SingleRowPredictor(booster, num_iteration=5)
    expected = booster.predict(x[:1], num_iteration=5)
    booster.predict(x[:1], num_iteration=-1)
    np.testing.assert_array_equal(predictor.predict(x[0]), expected)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (np.zeros((1, FEATURES)), "1-D float64 row"),
        (np.zeros(FEATURES, dtype=np.float32), "1-D float64 row"),
        ([0.0] * FEATURES, "1-D float64 row"),
        (np.zeros(FEATURES + 1), f"expected {FEATURES} features, got {FEATURES + 1}"),
        (np.zeros(2 * FEATURES)[::2], "strided view"),
    ],
    ids=["2-D", "float32", "list", "too long", "strided"],
)
def test_a_bad_row_is_a_clear_error(row: Any, message: str) -> None:
    predictor = SingleRowPredictor(_booster("regression", rounds=3))
    with pytest.raises(ValueError, match=message):
        predictor.predict(row)


def test_threads_sharing_one_predictor_get_their_own_rows_answers() -> None:
    booster = _booster("multiclass")
    x, _ = _data()
    expected = booster.predict(x)
    predictor = SingleRowPredictor(booster)
    wrong: list[int] = []

    def work(offset: int) -> None:
        for i in range(offset, len(x), 4):
            if not np.array_equal(predictor.predict(x[i])[0], expected[i]):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []


def test_the_predictor_outlives_its_booster_and_frees_its_handle() -> None:
    booster = _booster("binary", rounds=5)
    x, _ = _data()
    expected = booster.predict(x[:1])
    predictor = SingleRowPredictor(booster)
    del booster
    gc.collect()
    np.testing.assert_array_equal(predictor.predict(x[0]), expected)
    del predictor
    gc.collect()
