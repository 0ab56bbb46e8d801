"""Ground truth: what the world knows and the source tables do not.

Kept under ``<data_dir>/world/<tenant>/truth/`` as Parquet, never in the database, so models can
be scored against the best achievable answers:

* ``users.parquet`` - latent traits and each user's true best contact slot.
* ``journeys.parquet`` - every decision (move, refinance, investment), its day and first closing.
* ``move_daily/`` - per user and day: the daily hazard of deciding to move (as realised: zero
  once a decision is taken) and the oracle, the true probability of a SELL or BUY closing
  within the next 180 days given all the world knows that day.
* ``property_values.parquet`` - true value of every home at each month start.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from roiml.world.journeys import MOVE, Journeys, journey_cells
from roiml.world.oracle import HORIZON_DAYS

__all__ = ["HORIZON_DAYS", "MOVE_DAILY", "P_MOVE", "best_contact_slot", "move_probability"]

# The oracle's dataset and column: the world writes them, and the move model's training scores
# the oracle's AUC from them (``roiml.models.trainers``), so both take the names from here.
MOVE_DAILY = "move_daily"
P_MOVE = f"p_move_{HORIZON_DAYS}d"


def move_probability(journeys: Journeys) -> np.ndarray:
    """The oracle: P(a SELL or BUY closes in ``(t, t + 180 d]``) given all the world knows on
    day ``t``, per user and day.

    * Undecided on ``t``: the chance that the next decision is a move, taken in time for its
      first closing to fall inside the horizon, from the hazard paths ahead of the round ``t``
      belongs to (:func:`roiml.world.oracle.undecided_move_probability`, computed by the
      simulation round by round; refinancing and investing compete with moving).
    * Inside a move (decided on or before ``t``): its closings were set when it was decided, so
      1 if the next of them falls by ``t + 180`` (the second follows the first within 60 days),
      else 0.
    * Decided to refinance or invest, with no round after it in the window: 0 (a move would have
      to be decided and closed after that closing).

    Days whose horizon passes the world's end are NaN: their outcome is not in the data.
    """
    undecided = journeys.undecided_p_move
    if undecided is None:
        raise ValueError("the journeys carry no oracle: simulate them with simulate_journeys")
    n, days = undecided.shape
    day = np.arange(days)[None, :]
    probability = np.nan_to_num(undecided.astype(np.float64), nan=0.0)
    inside, _, close = journey_cells(journeys, n, days, MOVE)
    probability = np.where(inside, (close - day <= HORIZON_DAYS).astype(np.float64), probability)
    # From a move's first closing to its second: the second is the next SELL or BUY.
    between, _, last = journey_cells(
        replace(journeys, decision_day=journeys.close_day, close_day=journeys.end_day),
        n,
        days,
        MOVE,
    )
    probability = np.where(between, (last - day <= HORIZON_DAYS).astype(np.float64), probability)
    probability[:, max(days - HORIZON_DAYS, 0) :] = np.nan
    return probability.astype(np.float32)


def best_contact_slot(
    pref_weekday: np.ndarray, pref_hour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's true best (weekday, hour): where their habits put most of their attention."""
    return pref_weekday.astype(np.int64), np.mod(np.round(pref_hour), 24).astype(np.int64)
