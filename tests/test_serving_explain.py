"""The tabulated TreeSHAP the API serves equals LightGBM's own ``pred_contrib``, value for value."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from roiml.models.artifact import ModelArtifact
from roiml.models.explain import (
    TreeExplainer,
    contributions,
    explainer,
    lightgbm_contributions,
    top_features,
)
from roiml.models.predict import predict
from roiml.models.train import TrainingReport

# Different summation order only: LightGBM adds path by path, the tables leaf by leaf.
TOLERANCE = 1e-10


def _data(rows: int = 1500, features: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, features))
    x[rng.random(x.shape) < 0.15] = np.nan  # missing values take the default side
    x[:, 2] = np.round(x[:, 2])  # ties at split thresholds
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])
    return x, signal + rng.normal(scale=0.5, size=rows)


def _booster(params: dict[str, Any], target: np.ndarray, x: np.ndarray) -> lgb.Booster:
    base = {"verbose": -1, "num_threads": 1, "min_data_in_leaf": 5, "seed": 1}
    base |= {"bagging_fraction": 0.8, "bagging_freq": 1}
    return lgb.train(base | params, lgb.Dataset(x, target), num_boost_round=40)


def _assert_same(booster: lgb.Booster, x: np.ndarray, classes: np.ndarray | None = None) -> None:
    tabulated = explainer(booster)
    assert tabulated is not None
    ours = tabulated.explain(x, classes)
    theirs = lightgbm_contributions(booster, x, classes)
    np.testing.assert_allclose(ours.values, theirs.values, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours.base, theirs.base, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "regression", "num_leaves": 31, "max_depth": 6},
        {"objective": "regression", "num_leaves": 8, "use_missing": False},  # NaN read as 0
        {"objective": "binary", "num_leaves": 15, "max_depth": 4},
    ],
    ids=["regression-depth6", "no-missing-handling", "binary"],
)
def test_single_output_models_match_pred_contrib(params: dict[str, Any]) -> None:
    x, y = _data()
    target = (y > 0).astype(float) if params["objective"] == "binary" else y
    booster = _booster(params, target, x)
    _assert_same(booster, x[:300])
    _assert_same(booster, x[:1])  # the API's common case: one row


def test_multiclass_models_are_explained_for_each_rows_own_class() -> None:
    x, y = _data()
    target = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))
    booster = _booster({"objective": "multiclass", "num_class": 4, "num_leaves": 15}, target, x)
    classes = np.random.default_rng(3).integers(0, 4, 300)
    _assert_same(booster, x[:300], classes)
    _assert_same(booster, x[:300], np.zeros(300, dtype=int))


def test_paths_too_deep_to_tabulate_fall_back_to_lightgbm() -> None:
    x, y = _data(features=20)
    booster = _booster({"objective": "regression", "num_leaves": 255, "min_data_in_leaf": 2}, y, x)
    if explainer(booster) is not None:
        pytest.skip("the fitted trees happen to be shallow enough to tabulate")
    with pytest.raises(ValueError, match="too deep"):
        TreeExplainer(booster)


def test_served_models_explain_exactly(trained_models: dict[str, TrainingReport]) -> None:
    """Every booster the API explains, on rows of its own reference data."""
    for report in trained_models.values():
        artifact = ModelArtifact.load(report.artifact_dir)
        rows = np.random.default_rng(5).normal(size=(64, len(artifact.feature_names)))
        rows[::7, ::3] = np.nan
        answer = predict(artifact, rows)
        assert answer.contributions is not None
        for name, booster in artifact.boosters.items():
            if name in {"low", "high"}:
                continue  # interval boosters are predicted, not explained
            classes = None
            if booster.num_model_per_iteration() > 1:
                classes = np.arange(64) % booster.num_model_per_iteration()
            _assert_same(booster, rows, classes)


def test_one_row_is_explained_exactly_as_in_a_batch() -> None:
    """The API's one-row requests take their own path through the tables: same bits."""
    x, y = _data()
    target = np.digitize(y, np.quantile(y, [0.25, 0.5, 0.75]))
    booster = _booster({"objective": "multiclass", "num_class": 4, "num_leaves": 15}, target, x)
    tabulated = explainer(booster)
    assert tabulated is not None
    classes = np.arange(40) % 4
    batch = tabulated.explain(x[:40], classes)
    for i in range(40):
        one = tabulated.explain(x[i : i + 1], int(classes[i]))
        np.testing.assert_array_equal(one.values[0], batch.values[i], strict=True)
        np.testing.assert_array_equal(one.base[0], batch.base[i], strict=True)


def test_untabulated_boosters_explain_one_row_as_lightgbm_does() -> None:
    x, y = _data()
    x[:, 4] = np.abs(np.nan_to_num(np.round(x[:, 4] * 3)))  # a small categorical feature
    data = lgb.Dataset(x, y, categorical_feature=[4], params={"min_data_per_group": 5})
    params = {"objective": "regression", "verbose": -1, "num_threads": 1, "cat_smooth": 1}
    booster = lgb.train(params | {"min_data_in_leaf": 5}, data, num_boost_round=20)
    assert explainer(booster) is None
    reference = lightgbm_contributions(booster, x[:20])
    for i in range(20):
        one = contributions(booster, x[i : i + 1])
        np.testing.assert_array_equal(one.values[0], reference.values[i], strict=True)
        np.testing.assert_array_equal(one.base[0], reference.base[i], strict=True)


def test_served_models_answer_one_row_as_in_a_batch(
    trained_models: dict[str, TrainingReport],
) -> None:
    """Values, classes, confidences, details and explanations: bit for bit."""
    for report in trained_models.values():
        artifact = ModelArtifact.load(report.artifact_dir)
        rows = np.random.default_rng(9).normal(size=(12, len(artifact.feature_names)))
        rows[::5, ::4] = np.nan
        batch = predict(artifact, rows)
        assert batch.contributions is not None
        explained = batch.contributions
        for i in range(len(rows)):
            one = predict(artifact, rows[i : i + 1])
            assert one.contributions is not None
            np.testing.assert_array_equal(one.predicted_value[0], batch.predicted_value[i])
            np.testing.assert_array_equal(one.confidence[0], batch.confidence[i])
            assert one.predicted_class == [batch.predicted_class[i]]
            np.testing.assert_array_equal(one.contributions.values[0], explained.values[i])
            np.testing.assert_array_equal(one.contributions.base[0], explained.base[i])
            if batch.probabilities is not None:
                assert one.probabilities is not None
                np.testing.assert_array_equal(one.probabilities[0], batch.probabilities[i])
            for name, values in batch.details.items():
                np.testing.assert_array_equal(one.details[name][0], values[i])


def test_top_features_rank_by_magnitude_and_show_missing_inputs_as_none() -> None:
    values = np.array([[0.1, -0.5, 0.3], [0.0, 0.2, -0.2]])
    inputs = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    top = top_features(values, ["a", "b", "c"], inputs, k=2)
    assert top == [[("b", -0.5, None), ("c", 0.3, 3.0)], [("b", 0.2, 5.0), ("c", -0.2, 6.0)]]


def test_top_features_break_ties_by_column_order() -> None:
    values = np.array([[0.0, 0.5, 0.0, -0.5, 0.0, 0.2]])
    inputs = np.array([[1.0, 2.0, 3.0, 4.0, np.nan, 6.0]])
    top = top_features(values, list("abcdef"), inputs, k=4)
    assert top == [[("b", 0.5, 2.0), ("d", -0.5, 4.0), ("f", 0.2, 6.0), ("a", 0.0, 1.0)]]
    assert top_features(values, list("abcdef"), inputs, k=10)[0][-1] == ("e", 0.0, None)
