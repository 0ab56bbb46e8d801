"""How homeowners engage: document views, emails, portal sessions, alerts and searches.

Every stream is a Poisson process per (user, day) whose rate is the user's latent engagement
level, times their weekday preference, times a lift while a journey (move, refinance,
investment) is under way, times the season. Within a day, an event lands at the user's
preferred hour with their habit probability, else at a population-wide hour. Emails are sent on
the tenant's schedule; whether and when each is opened follows the same habits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from roiml.world.journeys import INVEST, MOVE, REFINANCE, Journeys, journey_cells
from roiml.world.macro import Macro
from roiml.world.population import PROPERTY_TYPES, Population

__all__ = ["NEWSLETTER_ANCHOR", "Engagement", "simulate_engagement"]

# When people at large use the portal, by hour of day (sums to 1).
_POP_HOURS = np.array(
    [2, 1, 1, 1, 1, 2, 4, 6, 7, 7, 6, 6, 7, 6, 5, 5, 5, 6, 7, 8, 8, 7, 5, 3], dtype=np.float64
)
_POP_HOURS /= _POP_HOURS.sum()
_DEVICES = np.array(["mobile", "desktop", "tablet"])
_DOC_ROUTINE = np.array(["TAX_STATEMENT", "INSURANCE", "HOME_VALUE_REPORT", "DEED"])
_DOC_MOVE = np.array(["DEED", "TITLE_POLICY", "HOME_VALUE_REPORT", "CLOSING_DISCLOSURE"])
_DOC_REFI = np.array(["MORTGAGE_NOTE", "CLOSING_DISCLOSURE", "HOME_VALUE_REPORT"])
_ALERT_TYPES = np.array(["PRICE_CHANGE", "NEW_LISTING", "MARKET_UPDATE", "HOME_VALUE", "RATE_DROP"])
# A newsletter Tuesday: newsletters go out every 14 days from it, before and after. (The first
# Tuesday of 2023, so worlds starting on 1 January 2023 keep the Tuesdays they always had.)
NEWSLETTER_ANCHOR = date(2023, 1, 3)


@dataclass
class Engagement:
    """The block's event tables, keyed by block-local user index (``user_idx``)."""

    document_access_events: pa.Table
    email_events: pa.Table
    platform_sessions: pa.Table
    alerts: pa.Table
    searches: pa.Table


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _journey_intent(journeys: Journeys, n: int, days: int, kind: int) -> np.ndarray:
    """(users, days) intent while a journey of ``kind`` runs: 0.4 at decision, rising to 1."""
    inside, decision, close = journey_cells(journeys, n, days, kind)
    progress = (np.arange(days)[None, :] - decision) / np.maximum(close - decision, 1.0)
    return np.where(inside, 0.4 + 0.6 * np.clip(progress, 0.0, 1.0), 0.0)


def _after_mask(users: np.ndarray, from_day: np.ndarray, n: int, days: int) -> np.ndarray:
    marks = np.zeros((n, days + 1))
    np.add.at(marks, (users, np.clip(from_day, 0, days)), 1.0)
    return np.cumsum(marks, axis=1)[:, :days] > 0.5


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (user, day) repeated by ``counts``: one row per event."""
    users, days = np.nonzero(counts)
    reps = counts[users, days]
    return np.repeat(users, reps), np.repeat(days, reps)


def _event_seconds(pop: Population, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Second of the day of each event: the user's habit hour, else the population's."""
    m = len(users)
    habit = rng.random(m) < pop.hour_habit[users]
    own = np.mod(np.round(pop.pref_hour[users] + rng.normal(0, 0.8, m)), 24)
    crowd = rng.choice(24, size=m, p=_POP_HOURS)
    hour = np.where(habit, own, crowd).astype(np.int64)
    return hour * 3600 + rng.integers(0, 3600, m)


def _timestamps(start: date, day: np.ndarray, seconds: np.ndarray) -> pa.Array:
    base = np.datetime64(start, "s")
    moments = base + (day.astype(np.int64) * 86400 + seconds).astype("timedelta64[s]")
    return pa.array(moments.astype("datetime64[us]"))


def _masked(keep: np.ndarray, values: pa.Array) -> pa.Array:
    """``values`` where ``keep``, else null."""
    return pc.if_else(pa.array(keep), values, pa.scalar(None, values.type))


def _delay_to_habit(
    pop: Population, users: np.ndarray, sent_seconds: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Seconds from a send until the user looks: their next habit hour, or a quick glance."""
    m = len(users)
    target = np.mod(pop.pref_hour[users] + rng.normal(0, 0.7, m), 24) * 3600
    until_habit = np.mod(target - np.mod(sent_seconds, 86400), 86400)
    quick = rng.exponential(2.5 * 3600, m)
    habit = rng.random(m) < pop.hour_habit[users]
    return np.where(habit, until_habit + rng.integers(0, 600, m), quick).astype(np.int64)


def _email_schedule(start: date, days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window day, second of day, type) of the tenant's campaign sends.

    The schedule is the calendar's: a day is a newsletter day (every other Tuesday, counted
    from :data:`NEWSLETTER_ANCHOR`), a first Thursday or a 15th whatever day the world starts.
    """
    day_index = np.arange(days)
    weekday = (start.weekday() + day_index) % 7
    dates = np.datetime64(start, "D") + day_index.astype("timedelta64[D]")
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    newsletter = (dates - np.datetime64(NEWSLETTER_ANCHOR, "D")).astype(np.int64) % 14 == 0
    market_report = (weekday == 3) & (dom <= 7)
    home_value = dom == 15
    sends = [
        (day_index[newsletter], 10 * 3600, "NEWSLETTER"),
        (day_index[market_report], 9 * 3600, "MARKET_REPORT"),
        (day_index[home_value], 11 * 3600, "HOME_VALUE"),
    ]
    out_day = np.concatenate([s[0] for s in sends])
    out_sec = np.concatenate([np.full(len(s[0]), s[1]) for s in sends])
    out_type = np.concatenate([np.full(len(s[0]), s[2]) for s in sends])
    return out_day, out_sec, out_type


def _window_dates(start: date, days: int) -> np.ndarray:
    return np.datetime64(start, "D") + np.arange(days).astype("timedelta64[D]")


def _anniversaries(
    users: np.ndarray, origin: date, purchase_day: np.ndarray, start: date, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """(user, window day) of each purchase anniversary in the window: the purchase's month and
    day in every later year (29 February falls on the 28th in other years)."""
    bought = np.datetime64(origin, "D") + purchase_day.astype("timedelta64[D]")
    month = bought.astype("datetime64[M]")
    month_of_year = month - bought.astype("datetime64[Y]").astype("datetime64[M]")
    day_of_month = (bought - month.astype("datetime64[D]")).astype(np.int64)
    first = np.datetime64(start, "D")
    last_year = (first + np.timedelta64(days - 1, "D")).astype("datetime64[Y]")
    out_users, out_days = [], []
    year = first.astype("datetime64[Y]")
    while year <= last_year:
        in_year = year.astype("datetime64[M]") + month_of_year
        month_days = (
            (in_year + 1).astype("datetime64[D]") - in_year.astype("datetime64[D]")
        ).astype(np.int64)
        when = in_year.astype("datetime64[D]") + np.minimum(day_of_month, month_days - 1)
        window_day = (when - first).astype(np.int64)
        keep = (window_day >= 0) & (window_day < days) & (when > bought)
        out_users.append(users[keep])
        out_days.append(window_day[keep])
        year = year + 1
    return np.concatenate(out_users), np.concatenate(out_days)


def simulate_engagement(
    pop: Population,
    journeys: Journeys,
    macro: Macro,
    start: date,
    days: int,
    rng: np.random.Generator,
    open_shift: tuple[int, float] | None = None,
) -> Engagement:
    """All engagement events of one block over the window.

    ``open_shift`` (day offset, log-odds) changes every user's chance of opening an email
    from that day on: a change in email habits, injected to test drift monitoring.
    """
    n = len(pop.market)
    move = _journey_intent(journeys, n, days, MOVE)
    refi = _journey_intent(journeys, n, days, REFINANCE)
    invest = _journey_intent(journeys, n, days, INVEST)
    any_intent = np.maximum(np.maximum(move, refi), invest)
    gone = journeys.kind == MOVE
    gone &= journeys.sell_only & (journeys.close_day < days)
    left = _after_mask(journeys.user[gone], journeys.close_day[gone], n, days)
    # Past clients who sold and left keep a little contact; the rest is as usual.
    presence = np.where(left, 0.3, 1.0) * pop.engagement[:, None]
    weekday = (start.weekday() + np.arange(days)) % 7
    pref = np.zeros((n, 7))
    pref[np.arange(n), pop.pref_weekday] = pop.weekday_strength
    pref[np.arange(n), (pop.pref_weekday + 1) % 7] += 0.3 * pop.weekday_strength
    pref = (1.0 + pref) / (1.0 + pref).mean(axis=1, keepdims=True)
    weekday_factor = pref[:, weekday]
    life = journeys.life_events
    month = (
        (np.datetime64(start, "D") + np.arange(days).astype("timedelta64[D]"))
        .astype("datetime64[M]")
        .astype(np.int64)
        % 12
    ) + 1
    tax_season = np.where((month >= 2) & (month <= 4), 1.8, 1.0)[None, :]

    # ---- platform sessions
    rate = (
        0.055
        * presence
        * weekday_factor
        * (1 + 2.5 * move + 1.2 * refi + 1.5 * invest + 0.4 * life)
    )
    users, day = _expand(rng.poisson(rate))
    m = len(users)
    sessions = pa.table(
        {
            "user_idx": users,
            "started_at": _timestamps(start, day, _event_seconds(pop, users, rng)),
            "duration_seconds": np.clip(
                rng.lognormal(5.3, 0.8, m) * (1 + any_intent[users, day]), 10, 7200
            ).astype(np.int64),
            "page_views": 1 + rng.poisson(2.0 + 4.0 * any_intent[users, day]),
            "device": _DEVICES[rng.choice(3, m, p=[0.6, 0.33, 0.07])],
        }
    )

    # ---- document access: routine, tax season, journeys, and a burst after buying
    rate = 0.012 * presence * weekday_factor * (tax_season + 6.0 * move + 5.0 * refi + 2.0 * invest)
    bought = np.isin(journeys.first_type, ["BUY", "INVESTMENT"]) | (journeys.kind == MOVE)
    bought &= (journeys.close_day < days) & ~journeys.sell_only
    burst = np.zeros((n, days))
    after_close = _after_mask(journeys.user[bought], journeys.close_day[bought], n, days)
    not_after = _after_mask(journeys.user[bought], journeys.close_day[bought] + 30, n, days)
    burst[after_close & ~not_after] = 0.12
    users, day = _expand(rng.poisson(rate + burst * (pop.active[:, None])))
    m = len(users)
    kind_pick = rng.random(m)
    doc_type = np.where(
        move[users, day] > 0,
        _DOC_MOVE[rng.integers(0, len(_DOC_MOVE), m)],
        np.where(
            refi[users, day] > 0,
            _DOC_REFI[rng.integers(0, len(_DOC_REFI), m)],
            _DOC_ROUTINE[rng.integers(0, len(_DOC_ROUTINE), m)],
        ),
    )
    documents = pa.table(
        {
            "user_idx": users,
            "document_type": doc_type,
            "action": np.where(
                kind_pick < 0.8, "VIEW", np.where(kind_pick < 0.95, "DOWNLOAD", "SHARE")
            ),
            "occurred_at": _timestamps(start, day, _event_seconds(pop, users, rng)),
            "duration_seconds": pa.array(
                np.where(
                    rng.random(m) < 0.05,
                    np.nan,
                    np.clip(rng.lognormal(4.0, 0.9, m), 3, 3600).round(),
                ),
                pa.int64(),
                from_pandas=True,
            ),
            "device": _DEVICES[rng.choice(3, m, p=[0.5, 0.44, 0.06])],
        }
    )

    # ---- searches: browsing, and hunting for the next home during a journey
    rate = 0.007 * presence * weekday_factor * (1 + 14.0 * move + 8.0 * invest + 0.8 * life)
    users, day = _expand(rng.poisson(rate))
    m = len(users)
    home_value = (
        macro.market_median[pop.market[users], macro.start_offset + day]
        * (pop.sqft[users] / 1800.0) ** 0.75
    )
    moving = move[users, day] > 0
    investing = invest[users, day] > 0
    # Upsizers look above their home's value, downsizers and investors below it.
    upsizer = pop.age[users] < 50
    centre = np.where(moving, np.where(upsizer, 1.3, 0.75), np.where(investing, 0.55, 1.0))
    centre = centre * np.exp(rng.normal(0, 0.12, m))
    relocating = rng.random(m) < np.where(moving, 0.2, 0.05)
    search_market = np.where(
        relocating, rng.choice(len(macro.market_ids), m, p=macro.market_weights), pop.market[users]
    )
    missing = rng.random((3, m))
    searches = pa.table(
        {
            "user_idx": users,
            "searched_at": _timestamps(start, day, _event_seconds(pop, users, rng)),
            "market_id": macro.market_ids[search_market],
            "min_price": pa.array(
                np.where(missing[0] < 0.25, np.nan, (home_value * centre * 0.8).round(-3)),
                from_pandas=True,
            ),
            "max_price": pa.array(
                np.where(missing[1] < 0.1, np.nan, (home_value * centre * 1.2).round(-3)),
                from_pandas=True,
            ),
            "bedrooms_min": pa.array(
                np.where(
                    missing[2] < 0.4,
                    np.nan,
                    np.clip(
                        np.round(pop.sqft[users] / 700 + np.where(upsizer, 1, -1) * moving), 1, 6
                    ),
                ),
                pa.int64(),
                from_pandas=True,
            ),
            "property_type": pa.array(
                PROPERTY_TYPES[rng.choice(4, m, p=[0.6, 0.2, 0.15, 0.05])],
                mask=rng.random(m) < 0.5,
            ),
            "results_count": rng.poisson(np.where(relocating, 60, 35)),
            "saved": rng.random(m) < (0.05 + 0.3 * any_intent[users, day]),
        }
    )

    # ---- alerts: sent by the platform; clicked by the engaged and the searching
    sent_rate = 0.07 * pop.active[:, None] * np.ones((1, days))
    users, day = _expand(rng.poisson(sent_rate))
    m = len(users)
    sent_seconds = rng.integers(8 * 3600, 18 * 3600, m)
    alert_type = _ALERT_TYPES[rng.choice(5, m, p=[0.25, 0.3, 0.2, 0.15, 0.1])]
    p_click = _sigmoid(
        -2.6
        + 0.8 * np.log(np.maximum(presence[users, day], 1e-3))
        + 1.6 * any_intent[users, day]
        + 0.8 * ((alert_type == "RATE_DROP") & (refi[users, day] > 0))
    )
    clicked = rng.random(m) < p_click
    click_seconds = sent_seconds + _delay_to_habit(pop, users, sent_seconds, rng)
    alerts = pa.table(
        {
            "user_idx": users,
            "alert_type": alert_type,
            "sent_at": _timestamps(start, day, sent_seconds),
            "clicked_at": _masked(clicked, _timestamps(start, day, click_seconds)),
        }
    )

    # ---- emails on the tenant's schedule, plus the home-purchase anniversary
    send_day, send_second, send_type = _email_schedule(start, days)
    recipients = np.nonzero(pop.email_opt_in)[0]
    users = np.repeat(recipients, len(send_day))
    day = np.tile(send_day, len(recipients))
    seconds = np.tile(send_second, len(recipients))
    etype = np.tile(send_type, len(recipients))
    ann_users, ann_day = _anniversaries(
        recipients, macro.origin, pop.purchase_day[recipients], start, days
    )
    users = np.concatenate([users, ann_users])
    day = np.concatenate([day, ann_day])
    seconds = np.concatenate([seconds, np.full(len(ann_day), 9 * 3600)])
    etype = np.concatenate([etype, np.full(len(ann_day), "ANNIVERSARY")])
    m = len(users)
    sent_weekday = (start.weekday() + day) % 7
    hour_gap = np.abs(np.mod(seconds / 3600 - pop.pref_hour[users] + 12, 24) - 12)
    logit = (
        -1.25
        + pop.open_affinity[users]
        + 0.5 * np.log(np.maximum(presence[users, day], 1e-3))
        + 1.2 * any_intent[users, day]
        + 0.35 * (sent_weekday == pop.pref_weekday[users])
        + 0.3 * (hour_gap < 2)
        + np.where(etype == "HOME_VALUE", 0.3, 0.0)
        + np.where(etype == "ANNIVERSARY", 0.6, 0.0)
    )
    if open_shift is not None:
        logit = logit + np.where(day >= open_shift[0], open_shift[1], 0.0)
    opened = (rng.random(m) < _sigmoid(logit)) & pop.active[users]
    open_seconds = seconds + _delay_to_habit(pop, users, seconds, rng)
    clicked = opened & (
        rng.random(m)
        < _sigmoid(-1.9 + 1.5 * any_intent[users, day] + 0.3 * pop.open_affinity[users])
    )
    click_seconds = open_seconds + rng.integers(5, 600, m)
    unsub = (rng.random(m) < 0.0008) & ~opened
    # A campaign is named by its type and calendar day (NEWSLETTER_20230103), not by its
    # offset in the window: the same send has the same name in every world.
    day_label = np.char.replace(np.datetime_as_string(_window_dates(start, days)), "-", "")
    campaign = np.char.add(np.char.add(etype.astype(str), "_"), day_label[day])
    emails = pa.table(
        {
            "user_idx": users,
            "campaign_id": campaign,
            "email_type": etype,
            "sent_at": _timestamps(start, day, seconds),
            "opened_at": _masked(opened, _timestamps(start, day, open_seconds)),
            "clicked_at": _masked(clicked, _timestamps(start, day, click_seconds)),
            "unsubscribed": unsub,
        }
    )
    return Engagement(
        document_access_events=documents,
        email_events=emails,
        platform_sessions=sessions,
        alerts=alerts,
        searches=searches,
    )
