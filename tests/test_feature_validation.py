"""The day-over-day shift gate of ``validate_frame``: a real shift fails it, a shared value moving
by one unit (all clients of one agent) does not, and the report says both measures."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from roiml.features.validation import (
    PSI_LIMIT,
    SHIFT_MIN_EFFECT,
    population_stability,
    shift_effect,
    validate_frame,
)

FEATURE = "agent_transactions_1y"  # integer, checked day over day
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
