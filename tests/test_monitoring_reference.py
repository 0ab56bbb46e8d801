"""Drift of a day's traffic against what that day should look like: a reference aligned by each
feature's relation to time. An unchanged population on another day does not drift; a real
change on one day does."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from roiml.features.catalog import CATALOG
from roiml.features.frame import AS_OF
from roiml.models.season import year_earlier
from roiml.monitoring.drift import MEAN_SHIFT, NOT_JUDGED, SHARED_STEP, detect_drift
from roiml.monitoring.reference import (
    align_reference,
    follows_sends,
    relations_of,
    seasonal_moves,
)

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


# --------------------------------------------------------------------------------------------
# the season: a move the same dates made a year earlier is not drift


def test_year_earlier_keeps_the_calendar_date() -> None:
    days = np.array(["2026-12-07", "2025-01-31", "2028-02-29", "2025-03-01"], "datetime64[D]")
    assert year_earlier(days).tolist() == list(
        np.array(["2025-12-07", "2024-01-31", "2027-03-01", "2024-03-01"], "datetime64[D]")
    )
    assert year_earlier(days[:1], 2)[0] == np.datetime64("2024-12-07")


def _tax_season_profile() -> pa.Table:
    # A panel's mean 7-day count of document reads: 0.5, rising over the week after 1 February
    # to 0.9 (tax statements), as the world does each year.
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2025-01-20"))
    into = np.clip((days - np.datetime64("2024-02-01")).astype(int) + 1, 0, 7)
    count = 0.5 + 0.4 * into / 7
    return pa.table(
        {
            AS_OF: pa.array(days.astype("datetime64[us]")),
            "doc_access_count_7d": count,
            "session_count_7d": np.full(days.size, 3.0),
        }
    )


def _tax_week(rate_today: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    days = np.arange(np.datetime64("2025-02-01"), np.datetime64("2025-02-08"))
    rates = 0.5 + 0.4 * np.arange(1, 8) / 7
    reference = np.concatenate([rng.poisson(r, (ROWS, 2)) for r in rates]).astype(np.float64)
    at = np.repeat(days.astype("datetime64[us]") + np.timedelta64(9, "h"), ROWS)
    today = rng.poisson(rate_today, (ROWS, 2)).astype(np.float64)
    return reference, at, today


def test_the_tax_seasons_rise_is_the_season_and_a_larger_one_is_drift() -> None:
    names = ["doc_access_count_7d", "session_count_7d"]
    instant = int(np.datetime64("2025-02-08T09:00", "us").astype(np.int64))
    reference, at, today = _tax_week(0.9)
    moves = seasonal_moves(_tax_season_profile(), names, at, instant)
    # a year earlier, 8 February stood 0.9 and the week before it 0.73 on average
    assert (
        abs(moves["doc_access_count_7d"] - (0.9 - np.mean(0.5 + 0.4 * np.arange(1, 8) / 7))) < 1e-9
    )
    assert moves["session_count_7d"] == 0.0

    plain = detect_drift(reference, today, names)
    assert plain["doc_access_count_7d"].drifted  # against the week before, February "drifts"
    seasonal = detect_drift(reference, today, names, seasonal=moves)
    assert not seasonal["doc_access_count_7d"].drifted
    assert "season" in (seasonal["doc_access_count_7d"].note or "")
    assert seasonal["doc_access_count_7d"].seasonal_move is not None
    # twice the season's rise, or a fall, or a move of a feature the season leaves alone: drift
    reference, at, today = _tax_week(1.4)
    assert detect_drift(reference, today, names, seasonal=moves)["doc_access_count_7d"].drifted
    reference, at, today = _tax_week(0.4)
    assert detect_drift(reference, today, names, seasonal=moves)["doc_access_count_7d"].drifted
    reference, at, today = _tax_week(0.9)
    today[:, 1] *= 1.5
    assert detect_drift(reference, today, names, seasonal=moves)["session_count_7d"].drifted


def test_no_season_without_a_profile_covering_the_dates() -> None:
    names = ["doc_access_count_7d"]
    _, at, _ = _tax_week(0.9)
    far = int(np.datetime64("2029-02-08T09:00", "us").astype(np.int64))  # 4 years on
    assert seasonal_moves(_tax_season_profile(), names, at, far) == {}
    instant = int(np.datetime64("2025-02-08T09:00", "us").astype(np.int64))
    assert seasonal_moves(None, names, at, instant) == {}
    assert seasonal_moves(_tax_season_profile(), names, None, instant) == {}
    # a calendar or shared feature has no seasonal move: it is judged by its own rule
    profile = _tax_season_profile().append_column("mortgage_rate_30y", pa.array(np.ones(385)))
    assert "mortgage_rate_30y" not in seasonal_moves(profile, ["mortgage_rate_30y"], at, instant)
