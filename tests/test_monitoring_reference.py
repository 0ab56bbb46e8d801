"""Drift of a day's traffic against what that day should look like: a reference aligned by each
feature's relation to time. An unchanged population on another day does not drift; a real
change on one day does."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from roiml.features.catalog import CATALOG
from roiml.monitoring.drift import MEAN_SHIFT, NOT_JUDGED, SHARED_STEP, detect_drift
from roiml.monitoring.reference import align_reference, follows_sends, relations_of

NAMES = [
    "day_of_week",  # calendar
    "days_since_signup",  # an age: grows a day a day
    "days_since_last_session",  # a clock sessions restart: a stationary population
    "mortgage_rate_30y",  # shared: one value for everyone
    "email_open_rate_30d",  # shaped by the tenant's sends: judged on its mean
    "session_count_30d",  # ordinary
]
ROWS = 3000
DAY = datetime(2026, 12, 7)


def _population(rng: np.random.Generator, day: datetime, rate: float) -> np.ndarray:
    signup = rng.uniform(0, 700, ROWS)
    # the same homeowners (seeded alike) on another day: the age moved on with the calendar
    return np.column_stack(
        [
            np.full(ROWS, day.weekday()),
            signup + (day - DAY).days,
            rng.exponential(12, ROWS),
            np.full(ROWS, rate),
            rng.beta(2, 5, ROWS),
            rng.poisson(6, ROWS),
        ]
    ).astype(np.float64)


def _judge(reference: np.ndarray, at: np.ndarray, current: np.ndarray, scales: np.ndarray):
    instant = int(np.datetime64(DAY, "us").astype(np.int64))
    aligned, unjudged = align_reference(reference, at, NAMES, current, instant)
    by_mean = [n for n in NAMES if follows_sends(CATALOG.features[n])]
    return detect_drift(
        aligned,
        current,
        NAMES,
        relations=relations_of(NAMES),
        scales=scales,
        unjudged=unjudged,
        by_mean=by_mean,
    )


def _week_before() -> tuple[np.ndarray, np.ndarray]:
    days = [DAY - timedelta(days=k) for k in range(7, 0, -1)]
    parts = [_population(np.random.default_rng(1), d, 6.5) for d in days]
    at = np.concatenate([np.full(ROWS, np.datetime64(d, "us")) for d in days])
    return np.concatenate(parts), at


def test_an_unchanged_population_a_week_on_does_not_drift() -> None:
    reference, at = _week_before()
    today = _population(np.random.default_rng(1), DAY, 6.5)
    drift = _judge(reference, at, today, np.array([2.0, 200, 12, 0.6, 0.2, 2.5]))
    assert not [name for name, d in drift.items() if d.drifted]
    assert drift["day_of_week"].method == NOT_JUDGED and drift["day_of_week"].note
    assert drift["mortgage_rate_30y"].method == SHARED_STEP
    assert drift["email_open_rate_30d"].method == MEAN_SHIFT
    # Unaligned, the age "drifts": a week of ages against today's.
    plain = detect_drift(reference, today, NAMES)
    assert plain["days_since_signup"].wasserstein > 0.0 and plain["day_of_week"].drifted


def test_a_rate_shock_and_fewer_opens_drift_on_their_first_day() -> None:
    reference, at = _week_before()
    today = _population(np.random.default_rng(1), DAY, 8.5)
    today[:, 4] *= 0.6  # opens fell by 40 %
    drift = _judge(reference, at, today, np.array([2.0, 200, 12, 0.6, 0.2, 2.5]))
    flagged = {name for name, d in drift.items() if d.drifted}
    assert flagged == {"mortgage_rate_30y", "email_open_rate_30d"}
    assert drift["mortgage_rate_30y"].score is not None and drift["mortgage_rate_30y"].score > 3
    # Scores read as times the allowed move, not as p-values at a cap.
    assert all(d.score is None or d.score < 100 for d in drift.values())


def test_clocks_without_instants_are_not_judged() -> None:
    reference, _ = _week_before()
    today = _population(np.random.default_rng(1), DAY, 6.5)
    drift = _judge(reference, None, today, np.array([2.0, 200, 12, 0.6, 0.2, 2.5]))  # type: ignore[arg-type]
    assert drift["days_since_signup"].method == NOT_JUDGED
    assert "instant" in (drift["days_since_signup"].note or "")
    assert drift["days_since_last_session"].method != NOT_JUDGED  # restarts: compared as is


def test_a_send_count_is_not_judged_but_the_reference_takes_the_days_step() -> None:
    # The 15th's email reached everyone: each homeowner's 30-day count is one higher than on
    # the days before. Not a drift; but the model reads the count, so the rows its answers on
    # the reference are computed from carry today's sends.
    rng = np.random.default_rng(3)
    names = ["emails_received_30d", "session_count_30d"]
    before = np.column_stack([rng.poisson(4, ROWS), rng.poisson(6, ROWS)]).astype(np.float64)
    today = before.copy()
    today[:, 0] += 1
    instant = int(np.datetime64(DAY, "us").astype(np.int64))
    aligned, unjudged = align_reference(before, None, names, today, instant)
    assert "emails_received_30d" in unjudged and "session_count_30d" not in unjudged
    assert np.median(aligned[:, 0]) == np.median(today[:, 0])
    assert np.array_equal(aligned[:, 1], before[:, 1])  # an ordinary feature as it was
    assert np.array_equal(before[:, 0] + 1, aligned[:, 0])
