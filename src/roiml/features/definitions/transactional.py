"""TRANSACTIONAL: the homeowner's deals so far and their agent (13)."""

from __future__ import annotations

from dataclasses import replace

from roiml.db.enums import DataType, FeatureCategory
from roiml.features.definition import CONTEXT, FeatureDefinition, TimeRelation
from roiml.features.definitions._sql import (
    PER_DAY,
    PER_YEAR,
    days_since,
    in_window,
    years_since,
)

__all__ = ["TRANSACTIONAL"]

_T = FeatureCategory.TRANSACTIONAL
_INT, _FLOAT, _BOOL = DataType.INTEGER, DataType.FLOAT, DataType.BOOLEAN
_FIVE_YEARS = 1826


def _count(
    name: str, description: str, condition: str = "TRUE", days: int | None = None
) -> FeatureDefinition:
    where = condition if days is None else f"{condition} AND {in_window(days)}"
    return FeatureDefinition(
        name,
        _T,
        "history",
        description,
        _INT,
        "transactions",
        f"count(*) FILTER (WHERE {where})",
        window_days=days,
        valid_min=0,
        valid_max=1000,
        fill=0,
    )


_TRANSACTIONAL: tuple[FeatureDefinition, ...] = (
    # history (5)
    _count("transaction_count_total", "Closed transactions before as-of, all time."),
    _count(
        "transaction_count_5y", "Closed transactions in the 5 years before as-of.", days=_FIVE_YEARS
    ),
    _count("buy_count_total", "BUY transactions before as-of.", "e.transaction_type = 'BUY'"),
    _count("sell_count_total", "SELL transactions before as-of.", "e.transaction_type = 'SELL'"),
    _count(
        "refinance_count_total",
        "REFINANCE transactions before as-of.",
        "e.transaction_type = 'REFINANCE'",
    ),
    # patterns (5)
    FeatureDefinition(
        "days_since_last_transaction",
        _T,
        "patterns",
        "Days since the last closed transaction before as-of.",
        _FLOAT,
        CONTEXT,
        days_since("c.last_tx_at"),
        valid_min=0,
        valid_max=40000,
        max_null_rate=0.3,
        needs=("last_tx",),
    ),
    FeatureDefinition(
        "last_transaction_type_code",
        _T,
        "patterns",
        "Type of the last transaction: 0 BUY, 1 SELL, 2 REFINANCE, 3 INVESTMENT.",
        _INT,
        CONTEXT,
        "CASE c.last_tx_type WHEN 'BUY' THEN 0 WHEN 'SELL' THEN 1 WHEN 'REFINANCE' THEN 2 "
        "WHEN 'INVESTMENT' THEN 3 END",
        valid_min=0,
        valid_max=3,
        max_null_rate=0.3,
        needs=("last_tx",),
    ),
    FeatureDefinition(
        "investment_count_total",
        _T,
        "patterns",
        "INVESTMENT purchases before as-of.",
        _INT,
        "transactions",
        "count(*) FILTER (WHERE e.transaction_type = 'INVESTMENT')",
        valid_min=0,
        valid_max=1000,
        fill=0,
    ),
    FeatureDefinition(
        "has_refinanced_5y",
        _T,
        "patterns",
        "1 if the homeowner refinanced in the last 5 years.",
        _BOOL,
        "transactions",
        "CAST(count(*) FILTER (WHERE e.transaction_type = 'REFINANCE' "
        f"AND {in_window(_FIVE_YEARS)}) > 0 AS INTEGER)",
        window_days=_FIVE_YEARS,
        valid_min=0,
        valid_max=1,
        fill=0,
    ),
    FeatureDefinition(
        "avg_years_between_transactions",
        _T,
        "patterns",
        "Mean years between consecutive transactions (null with fewer than two).",
        _FLOAT,
        "transactions",
        "date_diff('day', min(e.ts), max(e.ts)) / 365.25 / nullif(count(*) - 1, 0)",
        valid_min=0,
        valid_max=100,
        max_null_rate=0.95,
    ),
    # agent relationship (3)
    FeatureDefinition(
        "agent_tenure_years",
        _T,
        "agent_relationship",
        "Years the homeowner's agent has worked.",
        _FLOAT,
        CONTEXT,
        years_since("c.agent_hired_at"),
        valid_min=0,
        valid_max=80,
        max_null_rate=0.1,
        needs=("agent",),
    ),
    FeatureDefinition(
        "agent_client_count",
        _T,
        "agent_relationship",
        "Homeowners who had joined the agent's book before as-of.",
        _INT,
        CONTEXT,
        "coalesce(c.agent_clients_count, 0)",
        valid_min=0,
        valid_max=1e6,
        needs=("agent_clients",),
    ),
    FeatureDefinition(
        "agent_transactions_1y",
        _T,
        "agent_relationship",
        "Transactions closed by the agent's clients in the year before as-of.",
        _INT,
        CONTEXT,
        "coalesce(c.agent_deals_count, 0) - coalesce(c.agent_deals_year_ago_count, 0)",
        window_days=365,
        valid_min=0,
        valid_max=1e6,
        needs=("agent_deals", "agent_deals_year_ago"),
    ),
)
# Clocks: how much each grows a day.
_CLOCKS = {"days_since_last_transaction": PER_DAY, "agent_tenure_years": PER_YEAR}
# One value for every client of an agent, stepping when one joins or one's deal closes (or
# leaves the year): judged as a shared step, not as each homeowner's own. Judged as ordinary,
# a week's growth of the agents' books moved agent_transactions_1y by 0.11 std against the
# week before on an unchanged world (a drift alert on day 22 of the year replay).
_SHARED = {"agent_client_count", "agent_transactions_1y"}
TRANSACTIONAL = tuple(
    replace(feature, time_relation=TimeRelation.CLOCK, clock_per_day=_CLOCKS[feature.name])
    if feature.name in _CLOCKS
    else replace(feature, time_relation=TimeRelation.SHARED)
    if feature.name in _SHARED
    else feature
    for feature in _TRANSACTIONAL
)
