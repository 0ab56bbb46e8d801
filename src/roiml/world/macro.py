"""The world's economy, housing markets and agents: shared by every user block.

Mortgage rates follow a mean-reverting walk around a slow cycle (weekly, like a rate survey).
Each market has a price index with trend, cycle, spring/summer seasonality, a rate effect and
noise; inventory, days on market and sales follow from the index's momentum and the season.
History reaches 40 years back so that any purchase date has a rate and a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from roiml.world.config import WorldConfig

__all__ = ["HISTORY_YEARS", "Macro", "build_macro", "year_fraction"]

HISTORY_YEARS = 40


@dataclass(frozen=True)
class Macro:
    """Everything outside the homeowners, indexed by day offset from ``origin``."""

    origin: date  # day 0 of the daily arrays (HISTORY_YEARS before start)
    start_offset: int  # index of config.start in the daily arrays
    rate_30y: np.ndarray  # daily 30-year mortgage rate, percent
    market_median: np.ndarray  # (markets, days) median sale price
    market_heat: np.ndarray  # (markets, days) standardised heat: momentum, fewer days on market
    market_weights: np.ndarray  # share of homeowners per market
    market_ids: np.ndarray  # market id strings
    agent_ids: np.ndarray  # agent id strings
    agent_market: np.ndarray  # market index of each agent
    economic_indicators: pa.Table
    market_statistics: pa.Table
    agents: pa.Table

    def day(self, when: date) -> int:
        """Offset of ``when`` in the daily arrays."""
        return (when - self.origin).days


# Day offset, from the 1st, of the day a month's market figures are read at.
_MID_MONTH = 14


def year_fraction(origin: date, day_offsets: np.ndarray) -> np.ndarray:
    """Share of its calendar year gone at each day (offset from ``origin``): 0 on 1 January.

    Seasons follow the calendar, whatever day a world starts on (and leap years are years).
    """
    dates = np.datetime64(origin, "D") + np.asarray(day_offsets).astype("timedelta64[D]")
    year = dates.astype("datetime64[Y]")
    first = year.astype("datetime64[D]")
    length = (year + 1).astype("datetime64[D]") - first
    return (dates - first).astype(np.int64) / length.astype(np.int64)


def _week_of(origin: date, day_offsets: np.ndarray | int) -> np.ndarray:
    """Index of the rate week holding each day (offset from ``origin``).

    Rate weeks run Thursday to Wednesday, as a weekly survey published on Thursdays: the rate
    changes on the day its survey appears, the same calendar days in every world.
    """
    to_thursday = (origin.weekday() - 3) % 7
    return (np.asarray(day_offsets) + to_thursday) // 7


def _month_starts(first: date, last: date) -> list[date]:
    months = []
    current = date(first.year, first.month, 1)
    while current <= last:
        months.append(current)
        current = date(current.year + current.month // 12, current.month % 12 + 1, 1)
    return months


def _weekly_rate(rng: np.random.Generator, weeks: int) -> np.ndarray:
    # A slow 9-year cycle plus an AR(1) deviation: rates wander between ~2.5 % and ~9 %.
    t = np.arange(weeks)
    level = 6.2 + 1.6 * np.sin(2 * np.pi * t / (52 * 9) + rng.uniform(0, 2 * np.pi))
    shocks = rng.normal(0, 0.07, weeks)
    deviation = np.empty(weeks)
    deviation[0] = rng.normal(0, 0.5)
    phi = 0.985
    for week in range(1, weeks):  # a scalar recursion over ~2,100 weeks, not over entities
        deviation[week] = phi * deviation[week - 1] + shocks[week]
    return np.clip(level + deviation, 2.3, 11.0)


def build_macro(config: WorldConfig, rng: np.random.Generator) -> Macro:
    """Generate economy, markets and agents for ``config``."""
    origin = date(config.start.year - HISTORY_YEARS, config.start.month, 1)
    total_days = (config.end - origin).days + 1
    start_offset = (config.start - origin).days
    weeks = total_days // 7 + 2
    rate_weekly = _weekly_rate(rng, weeks)
    if config.shift_from is not None and config.rate_shock:
        # The shock lands on the first weekly survey (a Thursday) at or after shift_from, stays.
        first_week = _week_of(origin, (config.shift_from - origin).days + 6)
        rate_weekly[first_week:] = np.clip(rate_weekly[first_week:] + config.rate_shock, 0.5, 20)
    days = np.arange(total_days)
    rate_daily = rate_weekly[_week_of(origin, days)]

    n_markets = config.markets
    market_ids = np.array([f"mkt_{i:03d}" for i in range(n_markets)])
    market_weights = rng.dirichlet(np.full(n_markets, 3.0))
    base_price = np.exp(rng.normal(np.log(380_000), 0.35, n_markets))
    trend = rng.normal(0.045, 0.012, n_markets) / 365.0
    cycle_phase = rng.uniform(0, 2 * np.pi, n_markets)
    years = (days - start_offset) / 365.25
    season = 0.025 * np.sin(2 * np.pi * year_fraction(origin, days) - 1.2)  # early summer peak
    rate_effect = -0.03 * (rate_daily - 6.0)
    cycle = 0.06 * np.sin(2 * np.pi * years[None, :] / 7.5 + cycle_phase[:, None])
    noise_steps = rng.normal(0, 0.0025, (n_markets, total_days // 30 + 2))
    noise = np.cumsum(noise_steps, axis=1)[:, days // 30]
    log_index = trend[:, None] * (days - start_offset)[None, :] + cycle + season + rate_effect
    log_index = log_index + noise
    market_median = base_price[:, None] * np.exp(log_index)
    momentum = np.zeros_like(log_index)
    momentum[:, 365:] = log_index[:, 365:] - log_index[:, :-365]
    heat = (momentum - 0.045) / 0.05 - 0.2 * (rate_daily[None, :] - 6.0)
    market_heat = np.clip(heat, -3, 3)

    stats = _market_statistics(config, origin, market_ids, market_median, market_heat, rng)
    indicators = _economic_indicators(config, origin, rate_weekly, rng)

    # One agent per 250 homeowners, and at least one in every market.
    n_agents = max(n_markets, config.users // 250)
    agent_market = rng.choice(n_markets, size=n_agents, p=market_weights)
    agent_market[:n_markets] = np.arange(min(n_markets, n_agents))  # every market has an agent
    agent_ids = np.array([f"agent_{i:05d}" for i in range(n_agents)])
    hired_days = rng.integers(0, 365 * 15, n_agents)
    hired = np.datetime64(config.start, "D") - hired_days.astype("timedelta64[D]")
    agents = pa.table(
        {
            "agent_id": agent_ids,
            "name": np.array([f"Agent {i}" for i in range(n_agents)]),
            "brokerage": np.array([f"Brokerage {i % 17}" for i in range(n_agents)]),
            "market_id": market_ids[agent_market],
            "hired_at": pa.array(hired.astype("datetime64[us]")),
        }
    )
    return Macro(
        origin=origin,
        start_offset=start_offset,
        rate_30y=rate_daily,
        market_median=market_median,
        market_heat=market_heat,
        market_weights=market_weights,
        market_ids=market_ids,
        agent_ids=agent_ids,
        agent_market=agent_market,
        economic_indicators=indicators,
        market_statistics=stats,
        agents=agents,
    )


def _market_statistics(
    config: WorldConfig,
    origin: date,
    market_ids: np.ndarray,
    market_median: np.ndarray,
    market_heat: np.ndarray,
    rng: np.random.Generator,
) -> pa.Table:
    first = date(config.start.year - 2, config.start.month, 1)
    # A month's figures describe its middle day (the 15th), so a month exists here once that day
    # has been lived: a world ending on the 2nd to the 14th has no figures for its last month
    # (they would be published 45 days after the month began, past the world's end anyway).
    months = _month_starts(first, config.end - timedelta(days=_MID_MONTH + 1))
    offsets = np.array([(m - origin).days for m in months])
    n_markets, n_months = market_median.shape[0], len(months)
    median = market_median[:, offsets + _MID_MONTH]
    heat = market_heat[:, offsets + _MID_MONTH]
    month_of_year = np.array([m.month for m in months])
    seasonal = 1.0 + 0.35 * np.sin(2 * np.pi * (month_of_year - 3) / 12.0)
    size = np.asarray(rng.uniform(800, 6000, n_markets))[:, None]
    new_listings = rng.poisson(size * seasonal[None, :] * (1 + 0.05 * heat))
    closed = rng.poisson(size * 0.9 * seasonal[None, :] * np.exp(0.08 * heat))
    inventory = np.maximum(50, (size * 2.6 * np.exp(-0.18 * heat)).round()).astype(np.int64)
    months_supply = inventory / np.maximum(closed, 1)
    dom = np.clip(
        38 * np.exp(-0.22 * heat) * (1.15 - 0.15 * seasonal) + rng.normal(0, 2, heat.shape), 5, 180
    )
    ratio = np.clip(0.985 + 0.012 * heat + rng.normal(0, 0.004, heat.shape), 0.9, 1.08)
    month_dates = np.array(months, dtype="datetime64[D]")
    published = month_dates + np.timedelta64(45, "D")  # figures for a month appear mid next month
    return pa.table(
        {
            "market_id": np.repeat(market_ids, n_months),
            "month": pa.array(np.tile(month_dates, n_markets)),
            "published_at": pa.array(np.tile(published, n_markets).astype("datetime64[us]")),
            "median_price": median.ravel().round(-2),
            "price_index": (100 * median / median[:, :1]).ravel().round(3),
            "inventory": inventory.ravel(),
            "new_listings": new_listings.ravel(),
            "closed_sales": closed.ravel(),
            "days_on_market": dom.ravel().round(1),
            "months_supply": months_supply.ravel().round(2),
            "list_to_sale_ratio": ratio.ravel().round(4),
        }
    )


def _economic_indicators(
    config: WorldConfig, origin: date, rate_weekly: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    first = config.start - timedelta(days=730)
    # Thursdays, like the weekly mortgage rate survey.
    first += timedelta(days=(3 - first.weekday()) % 7)
    dates = np.arange(
        np.datetime64(first, "D"), np.datetime64(config.end, "D"), np.timedelta64(7, "D")
    )
    rate30 = rate_weekly[_week_of(origin, (dates - np.datetime64(origin, "D")).astype(np.int64))]
    n = len(dates)
    # The random walks of unemployment and inflation step with the calendar month (the surveys
    # of a month share its step), not every four surveys from wherever the history begins.
    month = dates.astype("datetime64[M]").astype(np.int64)
    monthly = month - month[0]
    unemployment = np.clip(
        4.5 + np.cumsum(rng.normal(0, 0.08, monthly[-1] + 1))[monthly] + 0.15 * (rate30 - 6),
        2.8,
        11,
    )
    cpi = np.clip(2.5 + np.cumsum(rng.normal(0, 0.12, monthly[-1] + 1))[monthly], -1, 9)
    confidence = np.clip(
        100 - 4 * (unemployment - 4.5) - 2 * (cpi - 2.5) + rng.normal(0, 2, n), 50, 140
    )
    return pa.table(
        {
            "observed_on": pa.array(dates),
            "mortgage_rate_30y": rate30.round(2),
            "mortgage_rate_15y": (rate30 - 0.65 + rng.normal(0, 0.05, n)).round(2),
            "fed_funds_rate": np.clip(rate30 - 2.1 + rng.normal(0, 0.1, n), 0.05, None).round(2),
            "unemployment_rate": unemployment.round(1),
            "cpi_yoy": cpi.round(1),
            "consumer_confidence": confidence.round(1),
        }
    )


def to_datetime64(day_offsets: np.ndarray, origin: date) -> np.ndarray:
    """Day offsets from ``origin`` as ``datetime64[D]``."""
    return np.datetime64(origin, "D") + day_offsets.astype("timedelta64[D]")
