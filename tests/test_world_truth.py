"""Journey cells against a loop (hypothesis), and the lag distribution's CDF (the oracle's
own tests are tests/test_oracle.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from roiml.world.journeys import MOVE, MOVE_LAG, REFINANCE, Journeys, journey_cells


def _journeys(hazard: np.ndarray, rows: list[tuple[int, int, int, int]]) -> Journeys:
    user, kind, decision, close = (
        (np.array(col, dtype=np.int64) for col in zip(*rows, strict=True))
        if rows
        else (np.zeros(0, np.int64),) * 4
    )
    empty = pa.table({})
    return Journeys(
        user=user,
        kind=kind,
        decision_day=decision,
        close_day=close,
        first_type=np.full(len(user), "SELL"),
        buy_first=np.zeros(len(user), bool),
        sell_only=np.zeros(len(user), bool),
        move_hazard=hazard,
        life_events=np.zeros_like(hazard),
        transactions=empty,
        new_properties=empty,
    )


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.sampled_from([MOVE, REFINANCE]),
            st.integers(-20, 70),
            st.integers(1, 40),
        ),
        max_size=6,
    )
)
def test_journey_cells_match_a_loop(rows: list[tuple[int, int, int, int]]) -> None:
    # One journey per user and kind at a time, as the simulation guarantees.
    seen: set[tuple[int, int]] = set()
    kept = []
    for user, kind, decision, lag in rows:
        if (user, kind) not in seen:
            seen.add((user, kind))
            kept.append((user, kind, decision, decision + lag))
    n, days = 4, 60
    journeys = _journeys(np.zeros((n, days)), kept)
    inside, decided, closes = journey_cells(journeys, n, days, MOVE)
    expected_inside = np.zeros((n, days), bool)
    expected_decided = np.zeros((n, days))
    for user, kind, decision, close in kept:
        if kind != MOVE:
            continue
        for t in range(days):
            if decision <= t < close:
                expected_inside[user, t] = True
                expected_decided[user, t] = decision
    np.testing.assert_array_equal(inside, expected_inside)
    np.testing.assert_array_equal(decided, expected_decided)
    assert (closes[inside] > np.arange(days)[None, :].repeat(n, 0)[inside]).all()


def test_lag_cdf_matches_its_samples() -> None:
    samples = MOVE_LAG.sample(np.random.default_rng(0), 200_000)
    grid = np.array([40, 60, 90, 115, 150, 250])
    empirical = (samples[:, None] <= grid[None, :]).mean(axis=0)
    # Samples are floored to whole days, so compare with the CDF one day later.
    np.testing.assert_allclose(MOVE_LAG.cdf(grid + 1), empirical, atol=0.01)
    assert np.all(np.diff(MOVE_LAG.cdf(np.arange(0, 400))) >= 0)
