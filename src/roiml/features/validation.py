"""Quality gates: per-value rules, per-frame rules (null rate, range, type), and day-over-day
distribution shift. Pure functions over Arrow/NumPy; each failure names feature, rule, observed
and allowed values so the report reads on its own."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from roiml.db.enums import DataType
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.definition import FeatureDefinition, TimeRelation
from roiml.features.frame import AS_OF, ENTITY_ID, feature_columns
from roiml.two_sample import population_stability, shift_effect

__all__ = [
    "CLOCK_JUMP_LIMIT",
    "MIN_SHIFT_SAMPLE",
    "PSI_LIMIT",
    "SCALE_LIMIT",
    "SHARED_APART_LIMIT",
    "SHIFT_MIN_EFFECT",
    "ValidationIssue",
    "ValidationReport",
    "null_rate",
    "validate_features",
    "validate_frame",
]

# Population stability index above which a feature's day-over-day shift fails the gate. 0.25 is
# the usual "significant shift" line; daily batches of the same population rarely pass 0.1.
PSI_LIMIT = 0.25
# Below this many values on either day, PSI measures sampling noise rather than a shift.
MIN_SHIFT_SAMPLE = 1000
# PSI only sees which decile a value falls in, not how far it moved: when one value is shared by
# many entities (all clients of an agent, all homes of a market), a change of one unit carries a
# tenth of the population across a decile edge, a PSI of 0.5 or more. A shift fails the gate
# only if the values also moved by this much: Wasserstein distance over the previous day's
# standard deviation (monitoring uses the same measure and line for numeric drift).
SHIFT_MIN_EFFECT = 0.1
# A SHARED feature's common step may move every entity, but not rescale the values: a day whose
# mean magnitude is more than this factor above or below the day before's changed units.
SCALE_LIMIT = 2.0
# ... and entities may move apart from their group's common step (each homeowner opens or not),
# but not by this many standard deviations on average: half the homeowners losing their month
# of emails is ~1 std, the most a month of a 3,000-homeowner world's opens moved was 0.24.
SHARED_APART_LIMIT = 0.5
# Share of a clock feature's running (not restarted) clocks that may run ahead of time.
CLOCK_JUMP_LIMIT = 0.01


@dataclass(frozen=True)
class ValidationIssue:
    """One failed rule."""

    feature: str
    rule: str
    observed: str
    allowed: str

    def __str__(self) -> str:
        return f"{self.feature}: {self.rule} - observed {self.observed}, allowed {self.allowed}"


@dataclass
class ValidationReport:
    """Outcome of validating a frame: passed when no issue was found."""

    rows: int
    issues: list[ValidationIssue] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every rule held."""
        return not self.issues

    def render(self) -> str:
        """A readable report, one failed rule per line."""
        if self.passed:
            return f"all rules passed on {self.rows} rows"
        lines = [f"{len(self.issues)} rule(s) failed on {self.rows} rows:"]
        lines.extend(f"  - {issue}" for issue in self.issues)
        return "\n".join(lines)


def _range_text(definition: FeatureDefinition) -> str:
    return f"[{definition.valid_min}, {definition.valid_max}]"


def _value_issue(definition: FeatureDefinition, value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        # A feature judged among some rows (null_rate_among) may be null outside them.
        if definition.max_null_rate <= 0 and definition.null_rate_among is None:
            return "is null but the feature is never null"
        return None
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float):
        return f"is {type(value).__name__}, expected a number"
    if not math.isfinite(value):
        return f"is {value}, expected a finite number"
    if definition.dtype in (DataType.INTEGER, DataType.BOOLEAN) and float(value) != int(value):
        return f"is {value}, expected a whole number ({definition.dtype.value})"
    if definition.dtype is DataType.BOOLEAN and value not in (0, 1):
        return f"is {value}, expected 0 or 1"
    if definition.valid_min is not None and value < definition.valid_min:
        return f"is {value}, below the valid range {_range_text(definition)}"
    if definition.valid_max is not None and value > definition.valid_max:
        return f"is {value}, above the valid range {_range_text(definition)}"
    return None


def validate_features(
    features: Mapping[str, object], catalog: Catalog = CATALOG
) -> tuple[bool, list[str]]:
    """The seed's ``validate_features(features) -> (is_valid, errors)`` for one feature vector.

    Unknown names, wrong types and values outside the valid range are errors.
    """
    errors: list[str] = []
    for name, value in features.items():
        definition = catalog.features.get(name)
        if definition is None:
            errors.append(f"{name}: unknown feature")
            continue
        problem = _value_issue(definition, value)
        if problem:
            errors.append(f"{name}: {problem}")
    return not errors, errors


def validate_frame(
    frame: pa.Table,
    previous: pa.Table | None = None,
    catalog: Catalog = CATALOG,
    psi_limit: float = PSI_LIMIT,
) -> ValidationReport:
    """Check every feature column of ``frame``: null rate, valid range, type; and, given the
    previous day's frame, the distribution shift: PSI over the previous day's deciles above
    ``psi_limit`` and values moved by more than ``SHIFT_MIN_EFFECT`` standard deviations.

    The shift is judged by the feature's :class:`TimeRelation`: a CALENDAR value is the date's
    and is not compared; a CLOCK is moved back by the time between the two frames first; a
    SHARED or TENANT_EVENTS feature is compared after the step every entity took (the median of
    the entities' own changes) is taken out, and that step must not rescale the values (a unit
    change).
    """
    report = ValidationReport(rows=frame.num_rows)
    if frame.num_rows == 0:
        report.issues.append(ValidationIssue("*", "row count", "0 rows", "at least 1 row"))
        return report
    pairs = _Pairs.of(frame, previous) if previous is not None else None
    for name in feature_columns(frame):
        definition = catalog.get(name)
        values = frame[name].to_numpy(zero_copy_only=False).astype(np.float64)
        present = ~np.isnan(values)
        rate = null_rate(frame, definition, present)
        if rate > definition.max_null_rate + 1e-12:
            allowed = f"<= {definition.max_null_rate:.1%}"
            if definition.null_rate_among is not None:
                among = f"{definition.null_rate_among} >= {definition.null_rate_among_min:g}"
                allowed += f" where {among}"
            report.issues.append(ValidationIssue(name, "null rate", f"{rate:.1%}", allowed))
        observed = values[present]
        if observed.size == 0:
            continue
        low = definition.valid_min if definition.valid_min is not None else -np.inf
        high = definition.valid_max if definition.valid_max is not None else np.inf
        outside = (observed < low) | (observed > high)
        if outside.any():
            report.issues.append(
                ValidationIssue(
                    name,
                    "valid range",
                    f"{int(outside.sum())} value(s) outside, e.g. {observed[outside][0]:g}",
                    _range_text(definition),
                )
            )
        if definition.dtype in (DataType.INTEGER, DataType.BOOLEAN):
            fractional = observed != np.round(observed)
            if fractional.any():
                report.issues.append(
                    ValidationIssue(
                        name,
                        "type",
                        f"{int(fractional.sum())} non-whole value(s)",
                        f"whole numbers ({definition.dtype.value})",
                    )
                )
        if previous is not None and name in previous.column_names:
            issue = _shift_issue(definition, frame[name], previous[name], pairs, psi_limit)
            if issue is not None:
                report.issues.append(issue)
    return report


def null_rate(frame: pa.Table, definition: FeatureDefinition, present: np.ndarray) -> float:
    """The share of null values, among the rows where the feature ``null_rate_among`` is at
    least ``null_rate_among_min`` when the definition names one (0 when there is no such row:
    nothing could be computed)."""
    if definition.null_rate_among is None:
        return float(1.0 - present.mean())
    if definition.null_rate_among not in frame.column_names:
        return 0.0
    values = frame[definition.null_rate_among].to_numpy(zero_copy_only=False).astype(np.float64)
    among = np.nan_to_num(values, nan=-np.inf) >= definition.null_rate_among_min
    return float(1.0 - present[among].mean()) if among.any() else 0.0


# Relations whose values take a step together (judged beyond it).
_STEPPING = frozenset({TimeRelation.SHARED, TimeRelation.TENANT_EVENTS})


@dataclass(frozen=True)
class _Pairs:
    """Rows of the same entity in both frames, and the days between the frames' instants."""

    current: np.ndarray
    previous: np.ndarray
    elapsed_days: float

    @classmethod
    def of(cls, frame: pa.Table, previous: pa.Table) -> _Pairs:
        if ENTITY_ID in frame.column_names and ENTITY_ID in previous.column_names:
            ids = frame[ENTITY_ID].to_numpy(zero_copy_only=False)
            before = previous[ENTITY_ID].to_numpy(zero_copy_only=False)
            _, current, earlier = np.intersect1d(ids, before, return_indices=True)
        else:
            current = earlier = np.empty(0, dtype=np.int64)
        return cls(current, earlier, _days_between(previous, frame))


def _days_between(earlier: pa.Table, later: pa.Table) -> float:
    """Days from the median instant of ``earlier`` to that of ``later`` (a daily frame holds one
    instant; 1.0 when either lacks an ``as_of``)."""
    if AS_OF not in earlier.column_names or AS_OF not in later.column_names:
        return 1.0
    if earlier.num_rows == 0 or later.num_rows == 0:
        return 1.0

    def middle(table: pa.Table) -> float:
        stamps = table[AS_OF].to_numpy(zero_copy_only=False).astype("datetime64[us]")
        return float(np.sort(stamps.astype(np.int64))[len(stamps) // 2])

    return (middle(later) - middle(earlier)) / 86_400e6


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _shift_issue(
    definition: FeatureDefinition,
    current_column: pa.ChunkedArray,
    previous_column: pa.ChunkedArray,
    pairs: _Pairs | None,
    psi_limit: float,
) -> ValidationIssue | None:
    """The day-over-day shift of one feature, judged by its relation to time (None: passed)."""
    relation = definition.time_relation
    if relation is TimeRelation.CALENDAR:
        return None  # the date's own value: another day has another one by design
    current, before = _floats(current_column), _floats(previous_column)
    what = "shift against the previous day"
    if relation is TimeRelation.CLOCK and pairs is not None:
        # A clock ticks for everyone: yesterday's values, one day on, are today's expectation.
        tick = definition.clock_per_day * pairs.elapsed_days
        what = "shift against the previous day, beyond the clock"
        if pairs.current.size:
            paired_now, expected = current[pairs.current], before[pairs.previous] + tick
            both = ~np.isnan(paired_now) & ~np.isnan(expected)
            paired_now, expected = paired_now[both], expected[both]
            # A clock that went back restarted at an event since (a campaign opened by many is
            # many restarts): events are the data, not a fault. What is judged is the clocks
            # that did not restart; history lost ahead of them makes them jump forward.
            tolerance = 1e-6 + 1e-9 * np.abs(expected)
            running = paired_now >= expected - tolerance
            jumped = int(np.count_nonzero(paired_now[running] > (expected + tolerance)[running]))
            # A running clock never runs faster than time: on undamaged data none does.
            if jumped >= 10 and jumped > CLOCK_JUMP_LIMIT * running.sum():
                return ValidationIssue(
                    definition.name,
                    what,
                    f"{jumped} of {int(running.sum())} running clocks jumped ahead of the "
                    f"{tick:g} a day",
                    f"at most {CLOCK_JUMP_LIMIT:.0%} (an event lost ahead of them)",
                )
            return None
        current = current - tick
    elif relation in _STEPPING and pairs is not None and pairs.current.size:
        paired_now, paired_before = current[pairs.current], before[pairs.previous]
        both = ~np.isnan(paired_now) & ~np.isnan(paired_before)
        if both.any():
            paired_now, paired_before = paired_now[both], paired_before[both]
            scale = _scale_issue(definition, paired_now, paired_before)
            if scale is not None:
                return scale
            # The step the entities share (a campaign send, a month of a market's figures) is
            # the calendar: what is judged is how far today's values are from yesterday's
            # moved by that step.
            expected = _shared_step(paired_before, paired_now)
            spread = max(float(np.std(paired_before)), 0.001)
            what = "shift against the previous day, beyond the step all entities share"
            # Paired, each entity's distance from its expected value is the measure: two
            # samples' distributions blur a half of the entities moving one way and a half the
            # other (PSI 0.15 for half the homeowners losing their month of emails).
            apart = float(np.mean(np.abs(paired_now - expected))) / spread
            if paired_now.size < MIN_SHIFT_SAMPLE or apart <= SHARED_APART_LIMIT:
                return None
            return ValidationIssue(
                definition.name,
                what,
                f"entities {apart:.2f} std away from their group's step on average",
                f"<= {SHARED_APART_LIMIT} std",
            )
    observed, before = current[~np.isnan(current)], before[~np.isnan(before)]
    return _judge(definition, before, observed, psi_limit, what)


def _judge(
    definition: FeatureDefinition,
    before: np.ndarray,
    observed: np.ndarray,
    psi_limit: float,
    what: str,
) -> ValidationIssue | None:
    """PSI over ``before``'s deciles and Wasserstein over its standard deviation: an issue when
    both pass their lines."""
    if min(before.size, observed.size) < MIN_SHIFT_SAMPLE:
        return None
    psi = population_stability(before, observed)
    if psi is None or psi <= psi_limit:
        return None
    effect = shift_effect(before, observed)
    if effect <= SHIFT_MIN_EFFECT:
        return None
    return ValidationIssue(
        definition.name,
        what,
        f"PSI {psi:.3f} and Wasserstein {effect:.2f} std",
        f"PSI <= {psi_limit} or Wasserstein <= {SHIFT_MIN_EFFECT} std",
    )


# Entities sharing yesterday's value form a group whose common step is its median change once
# it has this many members (a market, the homeowners with 5 emails); smaller groups take the
# median change of all entities.
_GROUP_MIN = 20


def _shared_step(before: np.ndarray, now: np.ndarray) -> np.ndarray:
    """``before`` moved by the step its entities share: each group of equal values by its
    members' median change (the whole population's for a small group)."""
    change = now - before
    _, group, counts = np.unique(before, return_inverse=True, return_counts=True)
    order = np.lexsort((change, group))
    starts = np.cumsum(counts) - counts
    step = change[order][starts + (counts - 1) // 2]
    step = np.where(counts >= _GROUP_MIN, step, np.median(change))
    return np.asarray(before + step[group], dtype=np.float64)


def _scale_issue(
    definition: FeatureDefinition, current: np.ndarray, before: np.ndarray
) -> ValidationIssue | None:
    """A shared step that rescaled a non-negative feature: the mark of a change of units (a
    price in thousands, a rate as a fraction), not of a publication."""
    if definition.valid_min is None or definition.valid_min < 0:
        return None  # a difference or a change crosses zero: its magnitude has no scale
    magnitude_before, magnitude_now = float(np.mean(before)), float(np.mean(current))
    if magnitude_before <= 0 or magnitude_now <= 0:
        return None
    ratio = magnitude_now / magnitude_before
    if 1 / SCALE_LIMIT <= ratio <= SCALE_LIMIT:
        return None
    return ValidationIssue(
        definition.name,
        "scale against the previous day (a change of units?)",
        f"mean {magnitude_now:.4g} vs {magnitude_before:.4g} the day before ({ratio:.3g}x)",
        f"{1 / SCALE_LIMIT:g}x to {SCALE_LIMIT:g}x",
    )
