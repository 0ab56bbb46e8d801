"""The day-over-day shift gate of ``validate_frame``: a real shift fails it, a shared value moving
by one unit (all clients of one agent) does not, and the report says both measures."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from roiml.features.validation import PSI_LIMIT, SHIFT_MIN_EFFECT, validate_frame
from roiml.two_sample import population_stability, shift_effect

# An ordinary integer, checked day over day, its values drawn lumpy: many homeowners share one,
# as all clients of an agent once shared agent_transactions_1y (SHARED since: judged beyond the
# group's step, tests below).
FEATURE = "page_views_30d"
ROWS = 5000


def _frame(values: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "entity_id": [f"user_{i}" for i in range(values.size)],
            "as_of": pa.array([datetime(2026, 11, 25)] * values.size, pa.timestamp("us")),
            FEATURE: values.astype(np.float64),
        }
    )


def _agents_book(rng: np.random.Generator) -> np.ndarray:
    """Each homeowner carries their agent's count: 50 agents, the largest with 10% of clients."""
    counts = rng.integers(5, 100, 50).astype(np.float64)
    counts[0] = 110.0
    shares = np.full(50, 0.9 / 49)
    shares[0] = 0.1
    return counts[rng.choice(50, ROWS, p=shares)]


def _shift_issues(before: np.ndarray, after: np.ndarray) -> list[str]:
    report = validate_frame(_frame(after), _frame(before))
    return [f"{i.observed} / {i.allowed}" for i in report.issues if i.rule.startswith("shift")]


def test_one_agent_losing_a_deal_is_not_a_shift() -> None:
    before = _agents_book(np.random.default_rng(5))
    after = before.copy()
    after[after == 110.0] = 109.0  # the largest agent's clients: a deal left the year window
    # A tenth of the population crossed a decile edge: PSI alone calls it a shift...
    assert population_stability(before, after) > PSI_LIMIT
    # ...but the values moved by a hundredth of a standard deviation.
    assert shift_effect(before, after) < 0.01
    assert _shift_issues(before, after) == []


def test_a_real_shift_fails_and_says_both_measures() -> None:
    before = _agents_book(np.random.default_rng(6))
    rng = np.random.default_rng(7)
    # A broken load: 40% of homeowners lose their agent's count.
    after = np.where(rng.random(ROWS) < 0.4, 0.0, before)
    issues = _shift_issues(before, after)
    assert len(issues) == 1
    assert "PSI" in issues[0] and "Wasserstein" in issues[0]
    assert shift_effect(before, after) > SHIFT_MIN_EFFECT
    # Every count doubled.
    assert len(_shift_issues(before, before * 2)) == 1


def test_a_constant_that_changes_is_a_shift() -> None:
    before = np.full(ROWS, 3.0)
    assert shift_effect(before, before) == 0.0
    assert shift_effect(before, np.full(ROWS, 4.0)) > 100 * SHIFT_MIN_EFFECT
    assert len(_shift_issues(before, np.where(np.arange(ROWS) % 2 == 0, 4.0, 3.0))) == 1


# --- relations to time: the calendar is not a data fault, a broken load still is --------------


def _day(values: dict[str, np.ndarray], day: int) -> pa.Table:
    rows = next(iter(values.values())).size
    return pa.table(
        {
            "entity_id": [f"user_{i}" for i in range(rows)],
            "as_of": pa.array([datetime(2026, 12, day)] * rows, pa.timestamp("us")),
            **{name: column.astype(np.float64) for name, column in values.items()},
        }
    )


def _issues(name: str, before: np.ndarray, after: np.ndarray) -> list[str]:
    # Rows in another order on the second day: pairs are matched by entity, not by position.
    order = np.random.default_rng(0).permutation(before.size)
    previous = _day({name: before}, 5)
    current = _day({name: after}, 6).take(pa.array(order))
    return [str(issue) for issue in validate_frame(current, previous).issues]


def test_a_campaign_send_moving_everyones_count_passes_and_a_half_load_fails() -> None:
    rng = np.random.default_rng(11)
    before = rng.poisson(5.0, ROWS).astype(np.float64)
    # The newsletter entered every homeowner's 30-day window; a few triggered emails left it.
    after = before + 1 - (rng.random(ROWS) < 0.05)
    assert _issues("emails_received_30d", before, after) == []
    # Half the homeowners' emails of the month did not arrive.
    half = np.where(rng.random(ROWS) < 0.5, np.floor(before / 3), after)
    (issue,) = _issues("emails_received_30d", before, half)
    assert "beyond the step all entities share" in issue


def test_a_clock_is_judged_beyond_its_tick() -> None:
    rng = np.random.default_rng(12)
    before = rng.uniform(0, 700, ROWS)
    assert _issues("days_since_signup", before, before + 1) == []
    # Years tick a 365th of a year a day.
    years = rng.uniform(0, 30, ROWS)
    assert _issues("ownership_years", years, years + 1 / 365.25) == []
    # Half the homeowners' sign-up dates moved back a year: not the clock.
    broken = np.where(rng.random(ROWS) < 0.5, before + 366, before + 1)
    (issue,) = _issues("days_since_signup", before, broken)
    assert "beyond the clock" in issue


def test_clocks_restarted_by_a_campaign_pass_and_lost_history_fails() -> None:
    rng = np.random.default_rng(14)
    before = rng.exponential(20.0, ROWS)
    # A newsletter went out yesterday and 40% of homeowners opened it: their clocks restarted.
    opened = rng.random(ROWS) < 0.4
    after = np.where(opened, rng.uniform(0, 1, ROWS), before + 1)
    assert _issues("days_since_last_email_open", before, after) == []
    # Half the opens of the last weeks were lost: those clocks jumped forward.
    lost = np.where(rng.random(ROWS) < 0.5, before + 1 + rng.exponential(20.0, ROWS), before + 1)
    (issue,) = _issues("days_since_last_email_open", before, lost)
    assert "beyond the clock" in issue


def test_calendar_features_are_the_dates_own() -> None:
    monday, tuesday = np.zeros(ROWS), np.ones(ROWS)
    assert _issues("day_of_week", monday, tuesday) == []
    assert _issues("is_weekend", monday, tuesday) == []


def test_a_shared_step_passes_and_a_change_of_units_fails() -> None:
    rate = np.full(ROWS, 6.52)
    assert _issues("mortgage_rate_30y", rate, rate + 0.07) == []  # the weekly survey
    assert _issues("mortgage_rate_30y", rate, rate + 2.0) == []  # a shock: drift, not a fault
    (issue,) = _issues("mortgage_rate_30y", rate, rate / 100)  # sent as a fraction
    assert "change of units" in issue and "0.01x" in issue
    rng = np.random.default_rng(13)
    prices = np.exp(rng.normal(np.log(380_000), 0.35, 12))[rng.integers(0, 12, ROWS)]
    assert _issues("market_median_price", prices, prices * 1.004) == []  # a month of figures
    (issue,) = _issues("market_median_price", prices, prices / 1000)  # in thousands
    assert "change of units" in issue
