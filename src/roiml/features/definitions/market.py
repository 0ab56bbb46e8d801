"""MARKET: the homeowner's housing market, the economy, and the season (13)."""

from __future__ import annotations

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import CONTEXT, FeatureDefinition, TimeRelation

__all__ = ["MARKET"]

_M = FeatureCategory.MARKET
_INT, _FLOAT, _BOOL = DataType.INTEGER, DataType.FLOAT, DataType.BOOLEAN
_MARKET = ("home", "market")


def _feature(
    name: str,
    sub: str,
    description: str,
    expression: str,
    dtype: DataType = _FLOAT,
    lo: float | None = None,
    hi: float | None = None,
    nulls: float = 0.05,
    needs: tuple[str, ...] = _MARKET,
    # One value for every home of a market (or everyone), stepping when figures are published.
    relation: TimeRelation = TimeRelation.SHARED,
) -> FeatureDefinition:
    return FeatureDefinition(
        name,
        _M,
        sub,
        description,
        dtype,
        CONTEXT,
        expression,
        valid_min=lo,
        valid_max=hi,
        max_null_rate=nulls,
        needs=needs,
        time_relation=relation,
    )


MARKET: tuple[FeatureDefinition, ...] = (
    # conditions (5): the latest month published before as-of
    _feature(
        "market_median_price",
        "conditions",
        "Median sale price of the home's market.",
        "c.market_median_price",
        lo=0,
        hi=1e8,
    ),
    _feature(
        "market_yoy_price_change",
        "conditions",
        "Year-on-year change of the market's median price.",
        "c.market_yoy_price_change",
        lo=-1,
        hi=5,
        nulls=0.3,
    ),
    _feature(
        "market_days_on_market",
        "conditions",
        "Median days on market.",
        "c.market_days_on_market",
        lo=0,
        hi=1000,
    ),
    _feature(
        "market_inventory",
        "conditions",
        "Homes for sale in the market.",
        "c.market_inventory",
        _INT,
        0,
        1e7,
    ),
    _feature(
        "market_months_supply",
        "conditions",
        "Months of supply at the current sales pace.",
        "c.market_months_supply",
        lo=0,
        hi=200,
    ),
    # economic (3): the latest weekly figures known before as-of
    _feature(
        "mortgage_rate_30y",
        "economic",
        "30-year fixed mortgage rate, percent.",
        "c.econ_rate_30y",
        lo=0,
        hi=25,
        needs=("econ",),
    ),
    _feature(
        "mortgage_rate_change_90d",
        "economic",
        "Change of the 30-year rate over the 13 weeks before, in points.",
        "c.econ_rate_30y - c.econ_rate_13w_ago",
        lo=-10,
        hi=10,
        nulls=0.1,
        needs=("econ",),
    ),
    _feature(
        "unemployment_rate",
        "economic",
        "Unemployment rate, percent.",
        "c.econ_unemployment_rate",
        lo=0,
        hi=40,
        needs=("econ",),
    ),
    # seasonal (5)
    _feature(
        "month_of_year",
        "seasonal",
        "Month of the as-of date (1-12).",
        "month(c.as_of)",
        _INT,
        1,
        12,
        0.0,
        (),
        TimeRelation.CALENDAR,
    ),
    _feature(
        "quarter",
        "seasonal",
        "Quarter of the as-of date (1-4).",
        "quarter(c.as_of)",
        _INT,
        1,
        4,
        0.0,
        (),
        TimeRelation.CALENDAR,
    ),
    _feature(
        "is_peak_season",
        "seasonal",
        "1 from March to June, the busiest months for moves.",
        "CAST(month(c.as_of) BETWEEN 3 AND 6 AS INTEGER)",
        _BOOL,
        0,
        1,
        0.0,
        (),
        TimeRelation.CALENDAR,
    ),
    _feature(
        "market_sales_seasonal_index",
        "seasonal",
        "The market's closed sales in the latest month over its 12-month mean.",
        "c.market_sales_seasonal_index",
        lo=0,
        hi=20,
    ),
    _feature(
        "market_listings_seasonal_index",
        "seasonal",
        "The market's new listings in the latest month over its 12-month mean.",
        "c.market_listings_seasonal_index",
        lo=0,
        hi=20,
    ),
)
