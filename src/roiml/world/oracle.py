"""The move oracle's arithmetic: the chance that an undecided homeowner's move closes in time.

The simulation (:mod:`roiml.world.journeys`) decides, per kind (move, refinance, investment), on
the first day whose cumulative hazard passes an ``Exp(1)`` draw; the earliest kind wins (a tie
goes to the move), and the move's first closing follows after a lag drawn then. Given that no
decision was taken by day ``t`` and the hazard paths ahead, the probability that the first
decision is a move taken on a day ``s`` in ``(t, t + h]`` whose first closing is by ``t + h`` is
exactly

``P(t) = exp(M(t) + O(t)) * sum_{j=1..h} g(t + j) * F(h - j)``,
``g(s) = (exp(-M(s-1)) - exp(-M(s))) * exp(-O(s-1))``

with ``M`` and ``O`` the cumulative move and other (refinance + investment) hazards and
``F(k) = P(lag <= k)``. Kept apart from :mod:`roiml.world.truth` because the simulation computes
it round by round, from each round's own hazard paths, and :mod:`roiml.world.truth` imports the
simulation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["HORIZON_DAYS", "undecided_move_probability"]

HORIZON_DAYS = 180


def undecided_move_probability(
    move: npt.NDArray[np.float64],
    other: npt.NDArray[np.float64],
    lag_cdf: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Per row and day ``t``: P(the first decision after ``t`` is a move on a day in
    ``(t, t + h]`` and its first closing falls by ``t + h`` | no decision by ``t``).

    ``move`` and ``other`` are daily hazards (rows x days; ``other`` the competing kinds summed);
    ``lag_cdf[k] = P(lag <= k)`` for ``k = 0 .. h - 1`` sets the horizon ``h``. All days at once
    as an FFT correlation; the last ``h`` days see the hazard only up to the window's end (the
    caller masks them).
    """
    rows, days = move.shape
    horizon = len(lag_cdf)
    moved = np.cumsum(move, axis=1)
    others = np.cumsum(other, axis=1)
    before_moved = np.concatenate([np.zeros((rows, 1)), moved[:, :-1]], axis=1)
    before_others = np.concatenate([np.zeros((rows, 1)), others[:, :-1]], axis=1)
    # exp(-M(s-1)) - exp(-M(s)) without the cancellation: exp(-M(s-1)) * (1 - exp(-h(s))).
    weighted = np.exp(-before_moved - before_others) * -np.expm1(-move)
    size = 1 << int(np.ceil(np.log2(days + horizon)))
    # conv(g, K)[t + h] = sum_{j=1..h} g(t + j) K[h - j] with K[i] = F(i), i = 0 .. h - 1.
    spectrum = np.fft.rfft(weighted, size, axis=1) * np.fft.rfft(lag_cdf, size)[None, :]
    correlated = np.fft.irfft(spectrum, size, axis=1)[:, horizon : horizon + days]
    probability: npt.NDArray[np.float64] = np.clip(np.exp(moved + others) * correlated, 0.0, 1.0)
    return probability
