"""Ground truth: what the world knows and the source tables do not.

Kept under ``<data_dir>/world/<tenant>/truth/`` as Parquet, never in the database, so models can
be scored against the best achievable answers:

* ``users.parquet`` - latent traits and each user's true best contact slot.
* ``journeys.parquet`` - every decision (move, refinance, investment), its day and first closing.
* ``move_daily/`` - per user and day: the daily hazard of deciding to move and the true
  probability of a move (first SELL or BUY closing) within the next 180 days.
* ``property_values.parquet`` - true value of every home at each month start.
"""

from __future__ import annotations

import numpy as np

from roiml.world.journeys import MOVE, MOVE_LAG, Journeys, journey_cells

__all__ = ["HORIZON_DAYS", "MOVE_DAILY", "P_MOVE", "best_contact_slot", "move_probability"]

HORIZON_DAYS = 180
# The oracle's dataset and column: the world writes them, and the move model's training scores
# the oracle's AUC from them (``roiml.models.trainers``), so both take the names from here.
MOVE_DAILY = "move_daily"
P_MOVE = f"p_move_{HORIZON_DAYS}d"


def move_probability(
    hazard: np.ndarray, journeys: Journeys, horizon: int = HORIZON_DAYS
) -> np.ndarray:
    """True P(first SELL/BUY closing within ``(t, t + horizon]``), per user and day.

    For a homeowner who has not decided at ``t``:
    ``sum_{s=t+1}^{t+h} h(s) * exp(-sum_{r=t+1}^{s-1} h(r)) * F(t + h - s)`` with ``F`` the CDF of
    the decision-to-closing lag; computed for all ``t`` at once as an FFT correlation. For one who
    decided at ``d <= t`` and has not closed: ``(F(t+h-d) - F(t-d)) / (1 - F(t-d))``. Days whose
    horizon passes the world's end are NaN: their outcome is not in the data.
    """
    n, days = hazard.shape
    cumulative = np.cumsum(hazard, axis=1)
    previous = np.concatenate([np.zeros((n, 1)), cumulative[:, :-1]], axis=1)
    weighted = hazard * np.exp(-previous)  # g(s)
    lag_cdf = MOVE_LAG.cdf(np.arange(horizon + 1))
    # kernel[i] = F(h - (h - i)) arranged so that conv(g, kernel)[t + h] = sum_j g(t+j) F(h-j)
    # conv(g, K)[t + h] = sum_{j=1..h} g(t + j) F(h - j) when K[i] = F(i), i = 0..h-1.
    kernel = lag_cdf[:horizon]
    size = 1 << int(np.ceil(np.log2(days + horizon)))
    spectrum = np.fft.rfft(weighted, size, axis=1) * np.fft.rfft(kernel, size)[None, :]
    correlated = np.fft.irfft(spectrum, size, axis=1)[:, horizon : horizon + days]
    probability = np.exp(cumulative) * correlated

    # Homeowners inside a move journey at t: the closing is already on its way.
    inside, decision, _ = journey_cells(journeys, n, days, MOVE)
    elapsed = np.arange(days)[None, :] - decision
    done = MOVE_LAG.cdf(elapsed)
    on_its_way = (MOVE_LAG.cdf(elapsed + horizon) - done) / np.maximum(1.0 - done, 1e-12)
    probability = np.where(inside, on_its_way, probability)
    probability = np.clip(probability, 0.0, 1.0)
    probability[:, max(days - horizon, 0) :] = np.nan
    return probability.astype(np.float32)


def best_contact_slot(
    pref_weekday: np.ndarray, pref_hour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's true best (weekday, hour): where their habits put most of their attention."""
    return pref_weekday.astype(np.int64), np.mod(np.round(pref_hour), 24).astype(np.int64)
