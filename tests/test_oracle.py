"""The move oracle is the true probability given all the world knows on the day (issue 19).

Its arithmetic against a naive sum and against a Monte Carlo of the decision process it models
(competing kinds, ties to the move, floored lags); then on a simulated block: on the days a move
is decided its value is the outcome itself, on undecided days it is calibrated, and a homeowner
about to decide has a higher chance than one who will not (the oracle summed the realised hazard,
cut to zero after the decision, so a mover's chance ended where the move was decided).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roiml.world.config import WorldConfig
from roiml.world.journeys import (
    MOVE,
    REFERENCE_USERS,
    LagDistribution,
    calibrate_hazards,
    journey_cells,
    simulate_journeys,
)
from roiml.world.macro import build_macro
from roiml.world.oracle import HORIZON_DAYS, undecided_move_probability
from roiml.world.population import build_population
from roiml.world.truth import move_probability

LAG = LagDistribution(offset=5.0, scale=5.0)


def _naive(move: np.ndarray, other: np.ndarray, lag: LagDistribution, h: int) -> np.ndarray:
    rows, days = move.shape
    out = np.zeros((rows, days))
    for r in range(rows):
        for t in range(days):
            survival, total = 1.0, 0.0
            for s in range(t + 1, min(t + h, days - 1) + 1):
                decide = survival * (1.0 - np.exp(-move[r, s]))
                total += decide * lag.cdf(np.array(t + h - s + 1))
                survival *= np.exp(-move[r, s] - other[r, s])
            out[r, t] = total
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 3), zeros=st.integers(0, 60))
def test_the_fft_matches_the_naive_sum(seed: int, rows: int, zeros: int) -> None:
    rng = np.random.default_rng(seed)
    days, h = 90, 30
    move = rng.uniform(0, 0.05, (rows, days))
    other = rng.uniform(0, 0.03, (rows, days))
    move[:, :zeros] = 0.0  # not yet eligible, as after a closing
    fast = undecided_move_probability(move, other, LAG.cdf(np.arange(1, h + 1)))
    slow = _naive(move, other, LAG, h)
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-9)


def test_the_formula_is_the_decision_process_probability() -> None:
    """A Monte Carlo of what the simulation does: per kind, the first day whose cumulative
    hazard passes an Exp(1) draw; the earliest kind wins, a tie goes to the move; the closing
    follows a floored lag. Conditioned on no decision by day t."""
    rng = np.random.default_rng(3)
    days, h, draws = 100, 40, 400_000
    move = np.concatenate([np.zeros(10), rng.uniform(0.005, 0.04, days - 10)])
    other = rng.uniform(0.0, 0.03, days)
    expected = undecided_move_probability(
        move[None, :], other[None, :], LAG.cdf(np.arange(1, h + 1))
    )[0]
    threshold = rng.exponential(1.0, (2, draws))
    cumulative = np.cumsum(np.stack([move, other]), axis=1)
    decided = np.stack(
        [np.searchsorted(cumulative[k], threshold[k], side="left") for k in range(2)]
    )  # first day whose cumulative reaches the draw (days: never)
    closing = decided[0] + LAG.sample(rng, draws)
    for t in (0, 5, 20, 45):
        undecided = (decided[0] > t) & (decided[1] > t)
        hit = (decided[0] <= decided[1]) & (decided[0] <= t + h) & (closing <= t + h)
        rate = hit[undecided].mean()
        error = np.sqrt(rate * (1 - rate) / undecided.sum())
        assert abs(expected[t] - rate) < 4 * error + 1e-4, (t, expected[t], rate)


@dataclass
class Block:
    probability: np.ndarray  # (users, days), NaN over the last horizon
    label: np.ndarray  # (users, days) bool: a SELL or BUY closes in (t, t + 180]
    decided: np.ndarray  # (users, days) bool: inside a move, or between its two closings
    deciding: np.ndarray  # (users, days) bool: undecided, and a move is decided in (t, t + 10]
    quiet: np.ndarray  # (users, days) bool: undecided, and no move decided in (t, t + 180]


@pytest.fixture(scope="module")
def block() -> Block:
    config = WorldConfig(
        users=3000, start=date(2023, 1, 1), end=date(2024, 12, 1), seed=19, tenant_id="o"
    )
    macro = build_macro(config, np.random.default_rng(np.random.SeedSequence([config.seed, 0])))
    reference_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2]))
    reference = build_population(0, REFERENCE_USERS, config.start, macro, reference_rng)
    calibration = calibrate_hazards(reference, macro, config.days, reference_rng)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, 0]))
    pop = build_population(0, config.users, config.start, macro, rng)
    journeys = simulate_journeys(pop, macro, config.days, rng, calibration)
    n, days = config.users, config.days
    probability = move_probability(journeys)

    tx = journeys.transactions
    moves = np.isin(tx["transaction_type"].to_numpy(zero_copy_only=False), ["SELL", "BUY"])
    users = tx["user_idx"].to_numpy()[moves]
    closed = tx["closed_day"].to_numpy()[moves]
    # label[u, t] = a closing c with t < c <= t + h: the cells [c - h, c) of each closing.
    marks = np.zeros((n, days + 1))
    np.add.at(marks, (users, np.clip(closed - HORIZON_DAYS, 0, days)), 1.0)
    np.add.at(marks, (users, np.clip(closed, 0, days)), -1.0)
    label = np.cumsum(marks, axis=1)[:, :days] > 0.5

    inside = journey_cells(journeys, n, days, MOVE)[0]
    seconds = replace(journeys, decision_day=journeys.close_day, close_day=journeys.end_day)
    decided = inside | journey_cells(seconds, n, days, MOVE)[0]

    def soon(window: int) -> np.ndarray:
        is_move = journeys.kind == MOVE
        marks = np.zeros((n, days + 1))
        decision = journeys.decision_day[is_move]
        who = journeys.user[is_move]
        np.add.at(marks, (who, np.clip(decision - window, 0, days)), 1.0)
        np.add.at(marks, (who, np.clip(decision, 0, days)), -1.0)
        return np.cumsum(marks, axis=1)[:, :days] > 0.5

    return Block(probability, label, decided, soon(10) & ~decided, ~soon(180) & ~decided)


def test_decided_days_know_their_outcome(block: Block) -> None:
    known = ~np.isnan(block.probability)
    cells = block.decided & known
    assert cells.sum() > 10_000
    np.testing.assert_array_equal(block.probability[cells], block.label[cells].astype(np.float32))


def test_undecided_days_are_calibrated(block: Block) -> None:
    cells = ~block.decided & ~np.isnan(block.probability)
    predicted = float(block.probability[cells].sum())
    realised = float(block.label[cells].sum())
    assert realised > 2_000
    assert abs(predicted - realised) / realised < 0.1, (predicted, realised)


def test_a_homeowner_about_to_decide_has_the_higher_chance(block: Block) -> None:
    known = ~np.isnan(block.probability)
    deciding = block.probability[block.deciding & known]
    quiet = block.probability[block.quiet & known]
    assert len(deciding) > 500
    # Summed over a path cut at the decision, the first was about a tenth of the second.
    assert deciding.mean() > 1.5 * quiet.mean(), (deciding.mean(), quiet.mean())
