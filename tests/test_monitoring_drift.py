"""Drift statistics against scipy on small data, their invariants, and the policy's verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from roiml.errors import ConfigurationError
from roiml.monitoring.drift import (
    DISTRIBUTION_BINS,
    SUMMARY_QUANTILES,
    DriftPolicy,
    DriftRule,
    detect_drift,
    distribution_summary,
)
from roiml.two_sample import categorical_statistics, numeric_statistics


def _finite(column: np.ndarray) -> np.ndarray:
    return column[np.isfinite(column)]


def _reference_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI the plain way: inverted-CDF reference quantiles, an edge value in the upper bin."""
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins, method="inverted_cdf"))
    expected = np.bincount(np.searchsorted(edges, reference, "right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, current, "right"), minlength=len(edges) + 1)
    e = np.clip(expected / reference.size, 1e-4, None)
    a = np.clip(actual / current.size, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def test_numeric_statistics_match_scipy_with_ties_nulls_and_negative_values() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(400, 6))
    current = rng.normal(0.4, 1.3, size=(250, 6))
    reference[:, 3] = rng.integers(0, 4, 400)  # heavy ties
    current[:, 3] = rng.integers(0, 5, 250)
    reference[:, 4] = -rng.integers(0, 3, 400) * 1.5 - 0.0  # negatives and -0.0
    current[:, 4] = -rng.integers(0, 3, 250) * 1.5
    reference[::7, 1] = np.nan
    current[::5, 2] = np.nan
    current[::11, 0] = np.inf  # counted as null
    result = numeric_statistics(reference, current)
    for j in range(6):
        ref, cur = _finite(reference[:, j]), _finite(current[:, j])
        ks = stats.ks_2samp(ref, cur, method="asymp")
        assert result.ks[j] == pytest.approx(ks.statistic, abs=1e-12)
        assert result.ks_pvalue[j] == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300)
        w1 = stats.wasserstein_distance(ref, cur)
        assert result.wasserstein_raw[j] == pytest.approx(w1, rel=1e-9, abs=1e-12)
        assert result.wasserstein[j] == pytest.approx(w1 / max(np.std(ref), 0.001), rel=1e-9)
        assert result.psi[j] == pytest.approx(_reference_psi(ref, cur), rel=1e-9, abs=1e-12)
        assert result.n_reference[j] == ref.size and result.n_current[j] == cur.size
        assert result.mean_current[j] == pytest.approx(cur.mean())


def test_large_samples_use_the_kolmogorov_limit_within_one_percent_of_scipy() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(20_000, 1))
    current = rng.normal(0.02, 1, size=(20_000, 1))
    result = numeric_statistics(reference, current)
    expected = stats.ks_2samp(reference[:, 0], current[:, 0], method="asymp")
    assert result.ks[0] == pytest.approx(expected.statistic, abs=1e-12)
    assert result.ks_pvalue[0] == pytest.approx(expected.pvalue, rel=0.01)


def test_threads_and_chunks_do_not_change_the_answer() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(3000, 21))
    current = rng.normal(0.1, 1, size=(2000, 21))
    one = numeric_statistics(reference, current, threads=1, chunk_columns=21)
    two = numeric_statistics(reference, current, threads=2, chunk_columns=4)
    for name in ("psi", "ks", "ks_pvalue", "wasserstein"):
        np.testing.assert_allclose(getattr(one, name), getattr(two, name), rtol=1e-12)


def test_an_empty_side_gives_null_statistics_not_an_error() -> None:
    reference = np.array([[1.0, np.nan], [2.0, np.nan]])
    current = np.array([[1.5, 3.0]])
    result = numeric_statistics(reference, current)
    assert np.isfinite(result.ks[0])
    assert np.isnan(result.ks[1]) and np.isnan(result.wasserstein[1]) and np.isnan(result.psi[1])
    drift = detect_drift(reference, current, ["a", "b"])
    assert drift["b"].drifted is False and drift["b"].as_json()["statistic"] is None


def test_categorical_statistics_match_scipy_chisquare() -> None:
    rng = np.random.default_rng(6)
    reference = rng.choice([0.0, 1.0, 2.0], p=[0.5, 0.3, 0.2], size=(500, 1))
    current = rng.choice([0.0, 1.0, 2.0], p=[0.3, 0.3, 0.4], size=(300, 1))
    result = categorical_statistics(reference, current)
    ref_counts = np.bincount(reference[:, 0].astype(int))
    cur_counts = np.bincount(current[:, 0].astype(int))
    expected = stats.chisquare(cur_counts, ref_counts / ref_counts.sum() * cur_counts.sum())
    assert result.chi2[0] == pytest.approx(expected.statistic)
    assert result.chi2_pvalue[0] == pytest.approx(expected.pvalue)
    # A level never seen in the reference is drift, whatever its share.
    new_level = categorical_statistics(np.zeros((50, 1)), np.array([[0.0], [7.0]]))
    assert new_level.chi2_pvalue[0] == 0.0


_samples = arrays(
    np.float64,
    st.tuples(st.integers(1, 60), st.just(3)),
    elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
)


@settings(max_examples=60, deadline=None)
@given(_samples)
def test_a_sample_has_no_drift_against_itself(sample: np.ndarray) -> None:
    result = numeric_statistics(sample, sample)
    np.testing.assert_allclose(result.psi, 0.0, atol=1e-12)
    np.testing.assert_allclose(result.ks, 0.0, atol=1e-12)
    np.testing.assert_allclose(result.wasserstein_raw, 0.0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(_samples, _samples)
def test_ks_and_wasserstein_are_symmetric_and_bounded(a: np.ndarray, b: np.ndarray) -> None:
    ab, ba = numeric_statistics(a, b), numeric_statistics(b, a)
    np.testing.assert_allclose(ab.ks, ba.ks, atol=1e-12)
    np.testing.assert_allclose(ab.wasserstein_raw, ba.wasserstein_raw, rtol=1e-9, atol=1e-6)
    assert np.all((ab.ks >= 0) & (ab.ks <= 1))
    assert np.all(ab.psi >= 0) and np.all(ab.wasserstein_raw >= 0)


@settings(max_examples=40, deadline=None)
@given(_samples, st.floats(-1e3, 1e3, allow_nan=False))
def test_a_constant_shift_moves_wasserstein_by_exactly_the_shift(
    sample: np.ndarray, shift: float
) -> None:
    shifted = sample + shift
    # Rounding of x + shift bounds the exactness; the shift itself is what moved.
    result = numeric_statistics(sample, shifted)
    np.testing.assert_allclose(result.wasserstein_raw, abs(shift), rtol=1e-6, atol=1e-3)


def test_defaults_flag_a_real_shift_and_not_noise_at_100k_rows() -> None:
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(10)]
    reference = rng.normal(size=(100_000, 10))
    current = rng.normal(size=(100_000, 10))
    current[:, 0] += 0.25  # a quarter of a standard deviation: real
    current[:, 1] *= 1.5  # a wider spread: real
    drift = detect_drift(reference, current, names)
    flagged = {name for name, d in drift.items() if d.drifted}
    assert flagged == {"f0", "f1"}
    assert all(d.method == "wasserstein" for d in drift.values())
    # The reason for the default: KS at p < 0.05 on 100k rows flags a tiny, harmless shift.
    tiny = rng.normal(0.015, 1, size=(100_000, 1))
    assert numeric_statistics(reference[:, :1], tiny).ks_pvalue[0] < 0.05
    assert not detect_drift(reference[:, :1], tiny, ["x"])["x"].drifted


def test_small_samples_use_corrected_ks_and_flag_only_the_shifted_feature() -> None:
    rng = np.random.default_rng(8)
    names = [f"f{i}" for i in range(200)]
    reference = rng.normal(size=(5000, 200))
    current = rng.normal(size=(300, 200))
    current[:, 7] += 0.6
    drift = detect_drift(reference, current, names)
    assert drift["f7"].drifted and drift["f7"].method == "ks"
    assert drift["f7"].threshold == pytest.approx(0.05 / 200)
    # Bonferroni bounds the chance of any false flag among the 199 stable features by 5 %;
    # uncorrected, about 10 of them would be flagged.
    false_flags = [n for n, d in drift.items() if d.drifted and n != "f7"]
    assert len(false_flags) <= 1
    uncorrected = detect_drift(reference, current, names, DriftPolicy(bonferroni=False))
    assert sum(d.drifted for d in uncorrected.values()) > 3
    assert drift["f7"].score is not None and drift["f7"].score > 1


def test_binary_features_are_categorical_and_rules_override_the_method() -> None:
    rng = np.random.default_rng(9)
    reference = np.column_stack([rng.random(5000) < 0.2, rng.normal(size=5000)])
    current = np.column_stack([rng.random(5000) < 0.45, rng.normal(size=5000)])
    policy = DriftPolicy(rules={"x": DriftRule("psi", 0.5)})
    drift = detect_drift(reference, current, ["flag", "x"], policy)
    assert drift["flag"].kind == "categorical" and drift["flag"].method == "psi"
    assert drift["flag"].drifted
    assert drift["x"].method == "psi" and drift["x"].threshold == 0.5 and not drift["x"].drifted
    entry = drift["flag"].as_json()
    assert set(entry) >= {"method", "statistic", "threshold", "drifted", "psi", "ks", "wasserstein"}
    assert entry["ks"] is None and entry["chi2_pvalue"] is not None


def test_drift_rule_parsing() -> None:
    assert DriftRule.parse("psi:0.25") == DriftRule("psi", 0.25)
    assert DriftRule.parse("ks") == DriftRule("ks", None)
    with pytest.raises(ConfigurationError, match="method must be one of"):
        DriftRule.parse("jensen")
    with pytest.raises(ConfigurationError, match="not a number"):
        DriftRule.parse("psi:high")


def test_each_feature_stores_both_sides_shapes_on_shared_bins() -> None:
    rng = np.random.default_rng(11)
    reference = np.column_stack(
        [rng.normal(0, 1, 4000), rng.choice([0.0, 1.0], 4000, p=[0.8, 0.2])]
    )
    current = np.column_stack([rng.normal(2, 1, 1500), rng.choice([0.0, 1.0], 1500, p=[0.4, 0.6])])
    current[:100, 0] = np.nan
    drift = detect_drift(reference, current, ["x", "flag"])
    shape = drift["x"].as_json()["distribution"]
    assert len(shape["edges"]) == DISTRIBUTION_BINS + 1
    assert sum(shape["reference"]) == pytest.approx(1, abs=1e-3)
    assert sum(shape["current"]) == pytest.approx(1, abs=1e-3)  # of the non-null values
    assert shape["quantiles"]["p"] == list(SUMMARY_QUANTILES)
    assert shape["quantiles"]["reference"][2] == pytest.approx(0, abs=0.1)
    assert shape["quantiles"]["current"][2] == pytest.approx(2, abs=0.1)
    # The mass moved right: the current side's upper half of the bins holds most of it.
    half = DISTRIBUTION_BINS // 2
    assert sum(shape["current"][half:]) > 0.7 > sum(shape["reference"][half:])
    levels = drift["flag"].as_json()["distribution"]
    assert levels["levels"] == [0.0, 1.0]
    assert levels["reference"][1] == pytest.approx(0.2, abs=0.03)
    assert levels["current"][1] == pytest.approx(0.6, abs=0.04)
    # A side with no value has no shape to draw.
    assert distribution_summary(np.array([np.nan]), np.array([1.0])) is None
    # One value everywhere still gives a drawable bin around it.
    flat = distribution_summary(np.ones(10), np.ones(5))
    assert flat is not None and flat["edges"][0] < 1 < flat["edges"][-1]


def test_whole_numbers_get_a_bin_each_centred_on_the_value() -> None:
    counts = distribution_summary(np.array([0.0, 1, 1, 2, 3]), np.array([0.0, 1, 3]))
    assert counts is not None
    assert counts["edges"] == [-0.5, 0.5, 1.5, 2.5, 3.5]
    assert counts["reference"] == [0.2, 0.4, 0.2, 0.2]
