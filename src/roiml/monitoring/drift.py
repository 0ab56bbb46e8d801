"""Which drift test judges which feature, and the verdicts: the policy over the statistics.

Every statistic is computed for every feature (see :mod:`roiml.two_sample`); the policy picks,
per feature, the one that decides and its threshold. Defaults (see docs/MONITORING.md for why):

* numeric, ``auto``: KS at p < 0.05 (Bonferroni-corrected over the features) while either side
  has at most ``small_sample_rows`` values, else Wasserstein distance / reference std > 0.1.
  Evidently switches on the reference size alone; a day of predictions is often the small side
  here, and Wasserstein's noise floor at a few hundred rows (about 0.05-0.1) is near its
  threshold, so the smaller side decides.
* categorical (at most ``categorical_max_levels`` distinct reference values), ``auto``:
  chi-square at p < 0.05 (corrected) for small samples, else PSI > 0.2.
* in ``auto``, a significant difference must also be a large one: a small sample drifts only
  if its p-value passes *and* its effect (Wasserstein / std, or PSI) passes the large-sample
  line. Every feature's ``score`` is that effect over its line, so a bar reads "how many times
  the allowed move", never a p-value pinned at a cap.

A feature's relation to time (:class:`roiml.features.definition.TimeRelation`) changes what is
compared: CALENDAR values are the date's and are not judged; a CLOCK is judged on values the
caller has moved to a common instant (or not at all when it could not); a SHARED value is one
step for everyone, so its move is measured against the spread the model was trained on
(``scales``) and judged at ``shared_threshold`` such spreads; a feature the tenant's sends
shape (``by_mean``: the rates over its emails, the clocks their opens restart) is judged on the
move of its mean, at ``mean_threshold`` standard deviations.

The season (``seasonal``: how far an ORDINARY feature's mean moved between the same dates a
year earlier) clears a drifted feature when it accounts for the move: same direction, at least
half of it, and what it leaves is under ``mean_threshold`` standard deviations. A move the
season did not make a year earlier (or made the other way) is judged as before.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from roiml.errors import ConfigurationError
from roiml.features.definition import TimeRelation
from roiml.settings import Settings
from roiml.two_sample import categorical_statistics, numeric_statistics

__all__ = [
    "DISTRIBUTION_BINS",
    "MEAN_SHIFT",
    "NOT_JUDGED",
    "SHARED_STEP",
    "SUMMARY_QUANTILES",
    "DriftPolicy",
    "DriftRule",
    "FeatureDrift",
    "detect_drift",
    "distribution_summary",
]

Method = Literal["wasserstein", "psi", "ks", "chi2"]
_NUMERIC: frozenset[str] = frozenset({"wasserstein", "psi", "ks"})
_CATEGORICAL: frozenset[str] = frozenset({"psi", "chi2"})
_PVALUE: frozenset[str] = frozenset({"ks", "chi2"})
_SCORE_CAP = 1e6
# The stored shape of each side (distribution_summary): bins of the shared histogram, and the
# quantiles a box of a distribution is drawn from.
DISTRIBUTION_BINS = 12
SUMMARY_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Methods of a feature given no verdict, and the one judging a shared value's step.
NOT_JUDGED, SHARED_STEP, MEAN_SHIFT = "not_judged", "shared_step", "mean_shift"


@dataclass(frozen=True)
class DriftRule:
    """A feature's own method and threshold (``None``: the policy's default for the method)."""

    method: Method
    threshold: float | None = None

    @classmethod
    def parse(cls, text: str) -> DriftRule:
        """``"psi"`` or ``"psi:0.25"`` (method, optional threshold)."""
        method, _, threshold = text.strip().partition(":")
        if method not in _NUMERIC | _CATEGORICAL:
            raise ConfigurationError(
                f"drift rule {text!r}: method must be one of wasserstein, psi, ks, chi2 "
                "(optionally ':threshold', e.g. 'psi:0.25')"
            )
        try:
            value = float(threshold) if threshold else None
        except ValueError:
            raise ConfigurationError(
                f"drift rule {text!r}: threshold {threshold!r} is not a number"
            ) from None
        return cls(method, value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DriftPolicy:
    """Methods and thresholds; :meth:`from_settings` reads them from the one settings object."""

    numeric_method: Literal["auto", "wasserstein", "psi", "ks"] = "auto"
    categorical_method: Literal["auto", "psi", "chi2"] = "auto"
    wasserstein_threshold: float = 0.1
    psi_threshold: float = 0.2
    ks_pvalue: float = 0.05
    chi2_pvalue: float = 0.05
    psi_bins: int = 10
    small_sample_rows: int = 1000
    categorical_max_levels: int = 2
    bonferroni: bool = True
    shared_threshold: float = 1.0
    mean_threshold: float = 0.3
    rules: Mapping[str, DriftRule] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftPolicy:
        """The policy the settings' ``monitoring_*`` fields describe."""
        return cls(
            numeric_method=settings.monitoring_numeric_method,
            categorical_method=settings.monitoring_categorical_method,
            wasserstein_threshold=settings.monitoring_wasserstein_threshold,
            psi_threshold=settings.monitoring_psi_threshold,
            ks_pvalue=settings.monitoring_ks_pvalue,
            chi2_pvalue=settings.monitoring_chi2_pvalue,
            psi_bins=settings.monitoring_psi_bins,
            small_sample_rows=settings.monitoring_small_sample_rows,
            categorical_max_levels=settings.monitoring_categorical_max_levels,
            bonferroni=settings.monitoring_bonferroni,
            shared_threshold=settings.monitoring_shared_threshold,
            mean_threshold=settings.monitoring_mean_threshold,
            rules={
                name: DriftRule.parse(text)
                for name, text in settings.monitoring_drift_rules.items()
            },
        )

    def threshold(self, method: str) -> float:
        """The default threshold of ``method``."""
        return {
            "wasserstein": self.wasserstein_threshold,
            "psi": self.psi_threshold,
            "ks": self.ks_pvalue,
            "chi2": self.chi2_pvalue,
        }[method]

    def automatic(self, name: str, kind: str) -> bool:
        """Whether ``name``'s method is picked by sample size (no rule, ``auto`` method)."""
        configured = self.numeric_method if kind == "numeric" else self.categorical_method
        return name not in self.rules and configured == "auto"

    def method_for(self, name: str, kind: str, smaller_side: int) -> tuple[str, float]:
        """The deciding method and its (uncorrected) threshold for one feature."""
        rule = self.rules.get(name)
        allowed = _NUMERIC if kind == "numeric" else _CATEGORICAL
        if rule is not None and rule.method in allowed:
            return rule.method, rule.threshold if rule.threshold is not None else self.threshold(
                rule.method
            )
        configured = self.numeric_method if kind == "numeric" else self.categorical_method
        if configured == "auto":
            small = smaller_side <= self.small_sample_rows
            if kind == "numeric":
                configured = "ks" if small else "wasserstein"
            else:
                configured = "chi2" if small else "psi"
        return configured, self.threshold(configured)


@dataclass
class FeatureDrift:
    """One feature's verdict and every statistic behind it (the ``feature_drift`` JSON entry)."""

    kind: str
    method: str
    statistic: float | None
    threshold: float
    drifted: bool
    score: float | None
    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    wasserstein: float | None
    chi2_pvalue: float | None
    n_reference: int
    n_current: int
    null_rate_reference: float | None
    null_rate_current: float | None
    mean_reference: float | None
    mean_current: float | None
    relation: str = TimeRelation.ORDINARY.value
    note: str | None = None
    # the move of the mean the same dates made a year earlier, in reference std (None: unknown)
    seasonal_move: float | None = None
    # Both sides' shapes, compact (see distribution_summary): what a dashboard draws as
    # reference against current; None when a side has no value.
    distribution: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry as stored in ``ml_monitoring.feature_drift`` (NaN becomes null)."""
        return {key: _plain(value) for key, value in self.__dict__.items()}


def detect_drift(
    reference: np.ndarray,
    current: np.ndarray,
    names: Sequence[str],
    policy: DriftPolicy | None = None,
    threads: int = 1,
    *,
    relations: Mapping[str, TimeRelation] | None = None,
    scales: np.ndarray | None = None,
    unjudged: Mapping[str, str] | None = None,
    by_mean: Collection[str] = (),
    seasonal: Mapping[str, float] | None = None,
) -> dict[str, FeatureDrift]:
    """Drift of every column of ``current`` against ``reference`` (rows x ``names``; NaN = null).

    All statistics come from one vectorised pass; the policy then decides per feature. A feature
    with no values on one side is reported with null statistics and ``drifted`` False.
    ``relations`` gives each feature's relation to time (default ORDINARY); ``scales`` the
    spread a SHARED feature's step is measured in (default: the reference's standard
    deviation); ``unjudged`` features (name -> why) get statistics but no verdict; ``by_mean``
    features are judged on the move of their mean, in reference standard deviations;
    ``seasonal`` gives an ORDINARY feature's move of the mean a year earlier, in its units.
    """
    policy = policy or DriftPolicy()
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, len(names))
    current = np.asarray(current, dtype=np.float64).reshape(-1, len(names))
    relations = relations or {}
    seasonal = seasonal or {}
    unjudged = dict(unjudged or {})
    numeric = numeric_statistics(reference, current, policy.psi_bins, threads)
    kinds = _kinds(reference, names, policy)
    categorical_index = [i for i, kind in enumerate(kinds) if kind == "categorical"]
    categorical = categorical_statistics(
        reference[:, categorical_index], current[:, categorical_index]
    )
    where = {column: i for i, column in enumerate(categorical_index)}

    for name in names:
        if relations.get(name) is TimeRelation.CALENDAR:
            unjudged.setdefault(name, "a calendar value: the date's own, one per day")
    spread = numeric.reference_std if scales is None else np.asarray(scales, dtype=np.float64)
    spread = np.where(np.isfinite(spread), spread, numeric.reference_std)
    n_tests = max(1, len(names) - len(unjudged.keys() & set(names)))
    out: dict[str, FeatureDrift] = {}
    for i, name in enumerate(names):
        kind = kinds[i]
        relation = relations.get(name, TimeRelation.ORDINARY)
        n_ref, n_cur = int(numeric.n_reference[i]), int(numeric.n_current[i])
        method, threshold = policy.method_for(name, kind, min(n_ref, n_cur))
        if relation is TimeRelation.SHARED and name not in policy.rules:
            method, threshold = SHARED_STEP, policy.shared_threshold
        elif name in by_mean and name not in policy.rules:
            method, threshold = MEAN_SHIFT, policy.mean_threshold
        if name in unjudged:
            method, threshold = NOT_JUDGED, math.nan
        if method in _PVALUE and policy.bonferroni and n_tests > 1:
            # Many features tested at once: without the correction 5 % of stable features
            # would be flagged every day by chance.
            threshold = threshold / n_tests
        if kind == "categorical":
            c = where[i]
            values = {
                "psi": float(categorical.psi[c]),
                "chi2": float(categorical.chi2_pvalue[c]),
                "ks": math.nan,
                "ks_pvalue": math.nan,
                "wasserstein": math.nan,
            }
        else:
            values = {
                "psi": float(numeric.psi[i]),
                "ks": float(numeric.ks[i]),
                "ks_pvalue": float(numeric.ks_pvalue[i]),
                "wasserstein": float(numeric.wasserstein[i]),
                "chi2": math.nan,
            }
        values[SHARED_STEP] = float(numeric.wasserstein_raw[i]) / max(float(spread[i]), 0.001)
        values[NOT_JUDGED] = math.nan
        std = max(float(numeric.reference_std[i]), 0.001)
        moved = float(numeric.mean_current[i]) - float(numeric.mean_reference[i])
        values[MEAN_SHIFT] = abs(moved) / std
        statistic = values["ks_pvalue"] if method == "ks" else values[method]
        if method in _PVALUE and policy.automatic(name, kind):
            # Significance alone is not drift: at a few hundred rows a tiny move can pass it.
            effect = values["psi"] if kind == "categorical" else values["wasserstein"]
            line = policy.psi_threshold if kind == "categorical" else policy.wasserstein_threshold
            drifted, score = _effect_verdict(statistic, threshold, effect, line)
        else:
            drifted, score = _verdict(method, statistic, threshold)
        expected = seasonal.get(name) if relation is TimeRelation.ORDINARY else None
        note = unjudged.get(name)
        if (
            drifted
            and expected is not None
            and kind == "numeric"
            and _seasonal(moved / std, expected / std, policy.mean_threshold)
        ):
            drifted = False
            note = (
                f"moved {moved / std:+.2f} std, as the same dates did a year earlier "
                f"({expected / std:+.2f} std): the season, not drift"
            )
        out[name] = FeatureDrift(
            kind=kind,
            method=method,
            statistic=statistic,
            threshold=threshold,
            drifted=drifted,
            score=score,
            psi=values["psi"],
            ks=values["ks"],
            ks_pvalue=values["ks_pvalue"],
            wasserstein=values["wasserstein"],
            chi2_pvalue=values["chi2"],
            n_reference=n_ref,
            n_current=n_cur,
            null_rate_reference=_share_null(n_ref, reference.shape[0]),
            null_rate_current=_share_null(n_cur, current.shape[0]),
            mean_reference=float(numeric.mean_reference[i]) if kind == "numeric" else math.nan,
            mean_current=float(numeric.mean_current[i]) if kind == "numeric" else math.nan,
            relation=relation.value,
            note=note,
            seasonal_move=expected / std if expected is not None else None,
            distribution=distribution_summary(reference[:, i], current[:, i], kind),
        )
    return out


def distribution_summary(
    reference: np.ndarray, current: np.ndarray, kind: str = "numeric"
) -> dict[str, Any] | None:
    """Both samples' shapes in a few dozen numbers, for drawing reference against current.

    Numeric: a histogram of ``DISTRIBUTION_BINS`` equal-width bins shared by both sides (from
    the lower of the two 1st percentiles to the higher of the two 99th, so one outlier does not
    squash the rest into a bin; values outside fall into the end bins; whole numbers spanning
    fewer values than that get a bin each), each side's shares of
    its non-null values, and each side's ``SUMMARY_QUANTILES``. Categorical: the shares of
    each level. Nulls are left out (the entry's null rates count them); ``None`` when a side has
    no value. Rounded to 4 significant digits: a picture, not a statistic.
    """
    ref = reference[np.isfinite(reference)]
    cur = current[np.isfinite(current)]
    if ref.size == 0 or cur.size == 0:
        return None
    if kind == "categorical":
        levels = np.unique(np.concatenate([ref, cur]))
        if levels.size > DISTRIBUTION_BINS:
            # Levels new in the current side can be many: the most common ones are kept.
            weight = [
                np.count_nonzero(ref == v) / ref.size + np.count_nonzero(cur == v) / cur.size
                for v in levels
            ]
            levels = np.sort(levels[np.argsort(weight)[::-1][:DISTRIBUTION_BINS]])
        return {
            "levels": [_round(v) for v in levels],
            "reference": [_round(np.count_nonzero(ref == v) / ref.size) for v in levels],
            "current": [_round(np.count_nonzero(cur == v) / cur.size) for v in levels],
        }
    probs = np.array(SUMMARY_QUANTILES)
    ref_q, cur_q = np.quantile(ref, probs), np.quantile(cur, probs)
    low = min(np.quantile(ref, 0.01), np.quantile(cur, 0.01))
    high = max(np.quantile(ref, 0.99), np.quantile(cur, 0.99))
    whole = bool(np.all(ref == np.round(ref)) and np.all(cur == np.round(cur)))
    if whole and np.ceil(high) - np.floor(low) < DISTRIBUTION_BINS:
        # Counts and codes: a bin per whole value, centred on it (equal-width bins would put
        # every value on an edge and leave every other bin empty).
        edges = np.arange(np.floor(low), np.ceil(high) + 1) + np.array([[-0.5], [0.5]])
        edges = np.append(edges[0], edges[1][-1])
        low, high = float(edges[0]), float(edges[-1])
    else:
        if not high > low:
            # One value on both sides (or nearly): a single bin around it.
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, DISTRIBUTION_BINS + 1)
    ref_counts, _ = np.histogram(np.clip(ref, low, high), bins=edges)
    cur_counts, _ = np.histogram(np.clip(cur, low, high), bins=edges)
    return {
        "edges": [_round(v) for v in edges],
        "reference": [_round(c / ref.size) for c in ref_counts],
        "current": [_round(c / cur.size) for c in cur_counts],
        "quantiles": {
            "p": list(SUMMARY_QUANTILES),
            "reference": [_round(v) for v in ref_q],
            "current": [_round(v) for v in cur_q],
        },
    }


def _round(value: float) -> float:
    return float(f"{float(value):.4g}")


def _seasonal(moved: float, expected: float, line: float) -> bool:
    """Whether a move of the mean (``moved``, in std) is the season's: the same dates a year
    earlier moved the same way by at least half as much, and the rest is under ``line``."""
    if not (math.isfinite(moved) and math.isfinite(expected)) or moved * expected <= 0:
        return False
    rest = abs(moved - expected)
    return rest <= 0.5 * abs(moved) and rest <= line


def _effect_verdict(
    pvalue: float, alpha: float, effect: float, line: float
) -> tuple[bool, float | None]:
    """Drift when the difference is both significant and larger than the effect ``line``; the
    score is the effect over its line either way."""
    if not math.isfinite(pvalue) or not math.isfinite(effect):
        return False, None
    return bool(pvalue < alpha and effect > line), effect / line


def _verdict(method: str, statistic: float, threshold: float) -> tuple[bool, float | None]:
    if method == NOT_JUDGED or not math.isfinite(statistic):
        return False, None
    if method in _PVALUE:
        score = min(threshold / max(statistic, 1e-300), _SCORE_CAP)
        return statistic < threshold, score
    return statistic > threshold, statistic / threshold if threshold > 0 else _SCORE_CAP


def _kinds(reference: np.ndarray, names: Sequence[str], policy: DriftPolicy) -> list[str]:
    """``categorical`` for a column with at most ``categorical_max_levels`` reference values."""
    kinds = ["numeric"] * len(names)
    if policy.categorical_max_levels <= 0 or reference.shape[0] == 0:
        return kinds
    # Cheap pre-filter: a column is a candidate only if it holds few values among its first
    # rows; the exact count is then taken on the candidates alone.
    head = reference[: 4 * policy.categorical_max_levels + 64]
    for i in range(len(names)):
        column = head[:, i]
        if np.unique(column[np.isfinite(column)]).size > policy.categorical_max_levels:
            continue
        full = reference[:, i]
        levels = np.unique(full[np.isfinite(full)]).size
        if 0 < levels <= policy.categorical_max_levels:
            kinds[i] = "categorical"
    return kinds


def _share_null(present: int, total: int) -> float | None:
    return 1.0 - present / total if total else None


def _plain(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
