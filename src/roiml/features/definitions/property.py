"""PROPERTY: the home owned as of the date - characteristics, finances, market context,
lifecycle (23). Null when the homeowner owns no home at that moment (sold and left)."""

from __future__ import annotations

from dataclasses import replace

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import CONTEXT, FeatureDefinition, TimeRelation
from roiml.features.definitions._sql import PER_YEAR, ratio, years_since

__all__ = ["PROPERTY"]

_P = FeatureCategory.PROPERTY
_INT, _FLOAT, _BOOL = DataType.INTEGER, DataType.FLOAT, DataType.BOOLEAN
_HOME = ("home",)
_VALUE = "c.market_value_estimate"


def _home(
    name: str,
    sub: str,
    description: str,
    expression: str,
    dtype: DataType = _FLOAT,
    lo: float | None = 0,
    hi: float | None = None,
    nulls: float = 0.3,
    needs: tuple[str, ...] = _HOME,
) -> FeatureDefinition:
    return FeatureDefinition(
        name,
        _P,
        sub,
        description,
        dtype,
        CONTEXT,
        expression,
        valid_min=lo,
        valid_max=hi,
        max_null_rate=nulls,
        needs=needs,
    )


_VALUED = ("home", "market")
_LOANED = ("home", "loan", "market")

_PROPERTY: tuple[FeatureDefinition, ...] = (
    # characteristics (8)
    _home(
        "property_sqft",
        "characteristics",
        "Living area in square feet.",
        "c.home_sqft",
        _INT,
        200,
        30000,
    ),
    _home("property_bedrooms", "characteristics", "Bedrooms.", "c.home_bedrooms", _INT, 0, 20),
    _home(
        "property_bathrooms",
        "characteristics",
        "Bathrooms (halves count 0.5).",
        "c.home_bathrooms",
        _FLOAT,
        0,
        20,
    ),
    _home(
        "property_age_years",
        "characteristics",
        "Years since the home was built.",
        "year(c.as_of) - c.home_year_built",
        _INT,
        0,
        300,
    ),
    _home(
        "property_lot_sqft",
        "characteristics",
        "Lot size in square feet (null for condos).",
        "c.home_lot_sqft",
        _INT,
        0,
        5_000_000,
        nulls=0.6,
    ),
    _home(
        "property_has_pool",
        "characteristics",
        "1 if the home has a pool.",
        "CAST(c.home_has_pool AS INTEGER)",
        _BOOL,
        0,
        1,
    ),
    _home(
        "property_garage_spaces",
        "characteristics",
        "Garage spaces.",
        "c.home_garage_spaces",
        _INT,
        0,
        10,
    ),
    _home(
        "property_type_code",
        "characteristics",
        "Home type: 0 single family, 1 condo, 2 townhouse, 3 multi-family.",
        "CASE c.home_property_type WHEN 'SINGLE_FAMILY' THEN 0 WHEN 'CONDO' THEN 1 "
        "WHEN 'TOWNHOUSE' THEN 2 WHEN 'MULTI_FAMILY' THEN 3 END",
        _INT,
        0,
        3,
    ),
    # financial (7)
    _home(
        "purchase_price",
        "financial",
        "Price paid for the home.",
        "c.home_purchase_price",
        _FLOAT,
        0,
        1e9,
    ),
    _home(
        "estimated_value",
        "financial",
        "Estimated value: the market's latest published median scaled by size (sqft^0.75).",
        _VALUE,
        _FLOAT,
        0,
        1e9,
        needs=_VALUED,
    ),
    _home(
        "estimated_equity",
        "financial",
        "Share of the estimated value not owed on the mortgage (1 = owned outright).",
        ratio(f"{_VALUE} - c.loan_balance", _VALUE),
        _FLOAT,
        -5,
        1,
        needs=_LOANED,
    ),
    _home(
        "loan_to_value",
        "financial",
        "Amortised mortgage balance over estimated value.",
        ratio("c.loan_balance", _VALUE),
        _FLOAT,
        0,
        5,
        needs=_LOANED,
    ),
    _home(
        "current_mortgage_rate",
        "financial",
        "Interest rate of the current loan on the home (after any refinance), percent.",
        "c.loan_rate",
        _FLOAT,
        0,
        25,
        nulls=0.4,
        needs=("home", "loan"),
    ),
    _home(
        "mortgage_rate_gap",
        "financial",
        "Current loan rate minus today's 30-year rate (negative: locked in by a cheap loan).",
        "c.loan_rate - c.econ_rate_30y",
        _FLOAT,
        -20,
        20,
        nulls=0.4,
        needs=("home", "loan", "econ"),
    ),
    _home(
        "annual_tax_to_value",
        "financial",
        "Annual property tax over estimated value.",
        ratio("c.home_tax_annual", _VALUE),
        _FLOAT,
        0,
        1,
        needs=_VALUED,
    ),
    # market context (5)
    _home(
        "value_change_since_purchase_pct",
        "market_context",
        "Estimated value over purchase price, minus 1.",
        ratio(_VALUE, "c.home_purchase_price") + " - 1",
        _FLOAT,
        -1,
        100,
        needs=_VALUED,
    ),
    _home(
        "appreciation_rate_annual",
        "market_context",
        "Yearly appreciation implied by estimated value and purchase price.",
        f"pow({ratio(_VALUE, 'c.home_purchase_price')}, "
        f"1.0 / greatest({years_since('c.home_purchased_at')}, 0.25)) - 1",
        _FLOAT,
        -1,
        100,
        needs=_VALUED,
    ),
    _home(
        "purchase_to_current_median_ratio",
        "market_context",
        "Purchase price over the market's current median price.",
        ratio("c.home_purchase_price", "c.market_median_price"),
        _FLOAT,
        0,
        100,
        needs=_VALUED,
    ),
    _home(
        "equity_amount_estimate",
        "market_context",
        "Estimated value minus the amortised mortgage balance, in dollars.",
        f"{_VALUE} - c.loan_balance",
        _FLOAT,
        -1e9,
        1e9,
        needs=_LOANED,
    ),
    _home(
        "market_heat_score",
        "market_context",
        "Heat of the home's market: 10 x year-on-year price change "
        "minus (days on market - 40) / 20.",
        "10 * c.market_yoy_price_change - (c.market_days_on_market - 40) / 20.0",
        _FLOAT,
        -50,
        50,
        nulls=0.35,
        needs=_VALUED,
    ),
    # lifecycle (3)
    _home(
        "ownership_years",
        "lifecycle",
        "Years since the home was bought.",
        years_since("c.home_purchased_at"),
        _FLOAT,
        0,
        100,
    ),
    _home(
        "years_since_mortgage_start",
        "lifecycle",
        "Years since the current loan started (purchase or last refinance).",
        years_since("c.loan_started_at"),
        _FLOAT,
        0,
        100,
        nulls=0.4,
        needs=("home", "loan"),
    ),
    FeatureDefinition(
        "properties_owned",
        _P,
        "lifecycle",
        "Homes owned as of the date (primary residence and investments).",
        _INT,
        "holdings",
        "count(*) FILTER (WHERE e.sold_at IS NULL OR e.sold_at >= c.as_of)",
        valid_min=0,
        valid_max=1000,
        fill=0,
    ),
)
# Clocks grow a year a year. A home's age is whole years (year of as-of minus year built): it
# steps once, on January 1st, by 1 against a spread of decades, so it is judged as it is.
# Market-wide scores and the gap to the weekly rate move for everyone at once when figures are
# published.
_CLOCKS = {"ownership_years", "years_since_mortgage_start"}
_SHARED = {"market_heat_score", "mortgage_rate_gap"}
PROPERTY = tuple(
    replace(feature, time_relation=TimeRelation.CLOCK, clock_per_day=PER_YEAR)
    if feature.name in _CLOCKS
    else replace(feature, time_relation=TimeRelation.SHARED)
    if feature.name in _SHARED
    else feature
    for feature in _PROPERTY
)
