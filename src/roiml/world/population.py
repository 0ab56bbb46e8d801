"""Homeowners and the homes they own when the world starts, with their hidden traits.

Observable columns go to the source tables (with realistic gaps); latent traits (propensity to
move, engagement level, preferred weekday and hour, household plans) stay in :class:`Population`
and feed the story and the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from roiml.world.macro import Macro

__all__ = ["Population", "build_population"]

PROPERTY_TYPES = np.array(["SINGLE_FAMILY", "CONDO", "TOWNHOUSE", "MULTI_FAMILY"])
_TYPE_SHARE = np.array([0.65, 0.15, 0.13, 0.07])
_TYPE_SQFT = np.array([2100.0, 1050.0, 1500.0, 2800.0])
# Hours at which people tend to look at their phone: early morning, lunch, evening.
_HOUR_PEAKS = np.array([7.5, 12.5, 20.0])
_HOUR_PEAK_SHARE = np.array([0.3, 0.25, 0.45])
_WEEKDAY_SHARE = np.array([0.17, 0.17, 0.16, 0.16, 0.12, 0.11, 0.11])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Population:
    """One block of homeowners: observable attributes and latent traits, one row per user."""

    user_index: np.ndarray  # global index
    user_ids: np.ndarray
    market: np.ndarray
    agent: np.ndarray
    age: np.ndarray  # age at world start
    household: np.ndarray
    income: np.ndarray  # band 1..5
    active: np.ndarray  # bool: account active (inactive users never engage)
    email_opt_in: np.ndarray
    propensity: np.ndarray  # latent propensity to move, N(0, 1)
    engagement: np.ndarray  # latent engagement level (multiplies every event rate)
    open_affinity: np.ndarray  # latent email-open tendency
    pref_weekday: np.ndarray  # 0 = Monday
    weekday_strength: np.ndarray
    pref_hour: np.ndarray  # float hour of day
    hour_habit: np.ndarray  # share of activity at the preferred hour
    p_sell_only: np.ndarray  # a mover sells without buying (downsizing to renting, leaving)
    p_buy_first: np.ndarray  # a mover who buys and sells buys first
    # the home owned at world start
    purchase_day: np.ndarray  # day offset (Macro.origin)
    purchase_price: np.ndarray
    quality: np.ndarray  # latent log value premium of the home
    value_drift: np.ndarray  # latent yearly log drift of the home against its market
    mortgage_amount: np.ndarray  # 0 when owned outright
    mortgage_rate: np.ndarray  # percent, current (after any earlier refinance)
    term_years: np.ndarray
    sqft: np.ndarray
    users: pa.Table
    properties: pa.Table
    prior_refinances: pa.Table  # REFINANCE transactions before the world starts
    purchases: pa.Table  # the BUY transactions of the homes owned at start


def build_population(
    first_index: int, size: int, start: date, macro: Macro, rng: np.random.Generator
) -> Population:
    """Generate ``size`` homeowners with global indices from ``first_index``."""
    n = size
    index = np.arange(first_index, first_index + n)
    user_ids = np.char.add("user_", index.astype(str))
    start_day = macro.start_offset
    n_markets = len(macro.market_ids)
    market = rng.choice(n_markets, size=n, p=macro.market_weights)
    # Agent in the same market: agents sorted by market, pick uniformly within the market's run.
    order = np.argsort(macro.agent_market, kind="stable")
    counts = np.bincount(macro.agent_market, minlength=n_markets)
    first_of = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has_agent = counts[market] > 0
    pick = first_of[market] + (rng.random(n) * np.maximum(counts[market], 1)).astype(np.int64)
    agent = np.where(has_agent, order[np.minimum(pick, len(order) - 1)], -1)

    age = np.clip(rng.normal(48, 13, n), 23, 88).round()
    household = np.clip(
        np.round(rng.gamma(2.2, 1.1, n) + 1 - 0.02 * np.maximum(age - 55, 0) * 2), 1, 7
    )
    income = np.clip(np.round(rng.normal(3, 1.1, n)), 1, 5)
    active = rng.random(n) > 0.07
    email_opt_in = rng.random(n) > 0.08
    propensity = rng.normal(0, 1, n)
    engagement = np.exp(rng.normal(-0.1, 0.75, n)) * active
    open_affinity = rng.normal(0, 0.9, n)
    pref_weekday = rng.choice(7, size=n, p=_WEEKDAY_SHARE)
    weekday_strength = rng.uniform(0.4, 2.2, n)
    peak = rng.choice(3, size=n, p=_HOUR_PEAK_SHARE)
    pref_hour = np.mod(_HOUR_PEAKS[peak] + rng.normal(0, 1.0, n), 24)
    hour_habit = rng.beta(4, 2, n)
    p_sell_only = _sigmoid(-1.4 + 0.07 * (age - 55) - 0.3 * (household - 2))
    p_buy_first = _sigmoid(-0.9 + 0.5 * (income - 3) - 0.03 * (age - 45))

    # The home owned at start: tenure mostly 2-15 years, some long-time owners.
    tenure_years = np.clip(rng.gamma(1.6, 5.5, n), 0.1, 38)
    purchase_day = start_day - (tenure_years * 365.25).astype(np.int64)
    ptype = rng.choice(4, size=n, p=_TYPE_SHARE)
    sqft = np.exp(rng.normal(np.log(_TYPE_SQFT[ptype] * (0.85 + 0.08 * income)), 0.25))
    quality = rng.normal(0, 0.15, n)
    value_drift = rng.normal(0, 0.01, n)
    median_at_purchase = macro.market_median[market, purchase_day]
    purchase_price = median_at_purchase * (sqft / 1800.0) ** 0.75 * np.exp(quality)
    has_mortgage = rng.random(n) < 0.88
    ltv = np.clip(rng.normal(0.8, 0.08, n), 0.4, 0.97)
    mortgage_amount = np.where(has_mortgage, purchase_price * ltv, 0.0)
    term_years = np.where(rng.random(n) < 0.82, 30, 15)
    original_rate = (
        macro.rate_30y[purchase_day] + rng.normal(0.25, 0.3, n) - (term_years == 15) * 0.6
    )
    original_rate = np.clip(original_rate, 2.0, 12.0)

    # Earlier refinances: owners who saw rates fall at least a point below theirs often took it.
    refi_day = purchase_day + (rng.random(n) * (start_day - purchase_day - 365)).astype(np.int64)
    refi_day = np.clip(refi_day, purchase_day + 365, start_day - 30)
    refi_rate = np.clip(macro.rate_30y[refi_day] + rng.normal(0.15, 0.2, n), 2.0, 12.0)
    did_refi = has_mortgage & (start_day - purchase_day > 400) & (refi_rate < original_rate - 1.0)
    did_refi &= rng.random(n) < 0.6
    mortgage_rate = np.where(did_refi, refi_rate, original_rate)

    origin = np.datetime64(macro.origin, "D")
    created_day = np.maximum(purchase_day, start_day - 365 * 4 + rng.integers(0, 400, n))

    def as_ts(days: np.ndarray) -> np.ndarray:
        return (origin + days.astype("timedelta64[D]")).astype("datetime64[us]")

    missing = rng.random((5, n))
    birth_year = np.where(missing[0] < 0.05, np.nan, start.year - age)
    users = pa.table(
        {
            "user_id": user_ids,
            "agent_id": pa.array(macro.agent_ids[np.maximum(agent, 0)], mask=agent < 0),
            "market_id": macro.market_ids[market],
            "created_at": pa.array(
                as_ts(created_day) + rng.integers(8, 20, n).astype("timedelta64[h]")
            ),
            "birth_year": pa.array(birth_year, pa.int64(), from_pandas=True),
            "household_size": pa.array(
                np.where(missing[1] < 0.1, np.nan, household), pa.int64(), from_pandas=True
            ),
            "income_band": pa.array(
                np.where(missing[2] < 0.15, np.nan, income), pa.int64(), from_pandas=True
            ),
            "email_opt_in": email_opt_in,
            "is_active": active,
        }
    )
    property_ids = np.char.add("prop_", index.astype(str))
    # Built no later than the year it was bought (the year of the purchase date, not the
    # start's year less whole years of tenure: a home bought in July 2022 for a world starting
    # on 1 January 2023 could be built in 2023).
    bought_in = (origin + purchase_day.astype("timedelta64[D]")).astype("datetime64[Y]")
    year_built = np.minimum(bought_in.astype(np.int64) + 1970, np.round(rng.normal(1988, 22, n)))
    bedrooms = np.clip(np.round(sqft / 650 + rng.normal(0.3, 0.6, n)), 1, 7)
    bathrooms = np.clip(np.round((bedrooms * 0.6 + rng.normal(0.4, 0.4, n)) * 2) / 2, 1, 6)
    is_condo_like = (ptype == 1) | (ptype == 2)
    properties = pa.table(
        {
            "property_id": property_ids,
            "owner_user_id": user_ids,
            "market_id": macro.market_ids[market],
            "is_primary_residence": np.ones(n, dtype=bool),
            "property_type": PROPERTY_TYPES[ptype],
            "bedrooms": bedrooms.astype(np.int64),
            "bathrooms": bathrooms,
            "sqft": pa.array(
                np.where(missing[3] < 0.03, np.nan, sqft.round()), pa.int64(), from_pandas=True
            ),
            "lot_sqft": pa.array(
                np.where(
                    is_condo_like | (missing[4] < 0.1),
                    np.nan,
                    (sqft * rng.uniform(2, 8, n)).round(),
                ),
                pa.int64(),
                from_pandas=True,
            ),
            "year_built": pa.array(
                np.where(missing[4] > 0.96, np.nan, year_built), pa.int64(), from_pandas=True
            ),
            "has_pool": rng.random(n) < 0.12,
            "garage_spaces": np.where(ptype == 1, 0, rng.integers(0, 4, n)),
            "hoa_monthly": pa.array(
                np.where(is_condo_like, rng.uniform(150, 650, n).round(), np.nan), from_pandas=True
            ),
            "tax_annual": (purchase_price * rng.uniform(0.008, 0.016, n)).round(),
            "purchased_at": pa.array(as_ts(purchase_day) + np.timedelta64(15, "h")),
            "purchase_price": purchase_price.round(-2),
            "mortgage_amount": pa.array(
                np.where(has_mortgage, mortgage_amount.round(-2), np.nan), from_pandas=True
            ),
            "mortgage_rate": pa.array(
                np.where(has_mortgage, original_rate.round(3), np.nan), from_pandas=True
            ),
            "mortgage_term_years": pa.array(
                np.where(has_mortgage, term_years, np.nan), pa.int64(), from_pandas=True
            ),
            "mortgage_started_at": pa.array(
                np.where(
                    has_mortgage,
                    as_ts(purchase_day) + np.timedelta64(15, "h"),
                    np.datetime64("NaT"),
                ),
                from_pandas=True,
            ),
            "sold_at": pa.nulls(n, pa.timestamp("us")),
        }
    )
    purchases = pa.table(
        {
            "user_id": user_ids,
            "property_id": property_ids,
            "agent_id": users["agent_id"],
            "transaction_type": np.full(n, "BUY"),
            "opened_at": pa.array(as_ts(purchase_day - rng.integers(30, 75, n))),
            "closed_at": pa.array(as_ts(purchase_day) + np.timedelta64(15, "h")),
            "price": purchase_price.round(-2),
            "loan_amount": pa.array(
                np.where(has_mortgage, mortgage_amount.round(-2), np.nan), from_pandas=True
            ),
            "interest_rate": pa.array(
                np.where(has_mortgage, original_rate.round(3), np.nan), from_pandas=True
            ),
        }
    )
    refi_idx = np.nonzero(did_refi)[0]
    prior_refinances = pa.table(
        {
            "user_id": user_ids[refi_idx],
            "property_id": property_ids[refi_idx],
            "agent_id": users["agent_id"].take(refi_idx),
            "transaction_type": np.full(len(refi_idx), "REFINANCE"),
            "opened_at": pa.array(as_ts(refi_day[refi_idx] - 40)),
            "closed_at": pa.array(as_ts(refi_day[refi_idx]) + np.timedelta64(15, "h")),
            "price": pa.nulls(len(refi_idx), pa.float64()),
            "loan_amount": (mortgage_amount[refi_idx] * 0.85).round(-2),
            "interest_rate": refi_rate[refi_idx].round(3),
        }
    )
    return Population(
        user_index=index,
        user_ids=user_ids,
        market=market,
        agent=agent,
        age=age,
        household=household,
        income=income,
        active=active,
        email_opt_in=email_opt_in,
        propensity=propensity,
        engagement=engagement,
        open_affinity=open_affinity,
        pref_weekday=pref_weekday,
        weekday_strength=weekday_strength,
        pref_hour=pref_hour,
        hour_habit=hour_habit,
        p_sell_only=p_sell_only,
        p_buy_first=p_buy_first,
        purchase_day=purchase_day,
        purchase_price=purchase_price,
        quality=quality,
        value_drift=value_drift,
        mortgage_amount=mortgage_amount,
        mortgage_rate=np.where(has_mortgage, mortgage_rate, 0.0),
        term_years=term_years,
        sqft=sqft,
        users=users,
        properties=properties,
        prior_refinances=prior_refinances,
        purchases=purchases,
    )
