"""Context joins: the latest row before ``as_of`` of homes, loans, markets, rates and agents.

Each join adds columns ``<join>_<name>`` to the context row ``c``. ASOF joins pick, per frame row,
the source row with the greatest ``ts`` strictly before ``as_of`` - point in time by construction -
and, among rows tied on ``ts`` whose columns differ, the first in the join's ``ties`` order.
"""

from __future__ import annotations

from roiml.features.definition import ContextJoin
from roiml.features.definitions._sql import owned

__all__ = ["CONTEXT_JOINS", "RECENCY_DAYS"]

_HOME_COLUMNS = (
    "property_id",
    "market_id",
    "property_type",
    "bedrooms",
    "bathrooms",
    "sqft",
    "lot_sqft",
    "year_built",
    "has_pool",
    "garage_spaces",
    "tax_annual",
    "purchased_at",
    "purchase_price",
    "mortgage_amount",
    "mortgage_rate",
    "mortgage_term_years",
    "mortgage_started_at",
    "latitude",
    "longitude",
)


# Recency ("days since the last ...") looks back this far and no further, so a batch that loads
# this much history and a single-entity computation that loads all of it agree.
RECENCY_DAYS = 180


def _latest(
    name: str,
    relation: str,
    tables: tuple[str, ...],
    columns: tuple[str, ...],
    key: str = "c.entity_id",
    needs: tuple[str, ...] = (),
    lookback_days: int | None = None,
    ties: tuple[str, ...] = (),
) -> ContextJoin:
    return ContextJoin(
        name=name,
        relation=relation,
        key=key,
        columns=columns,
        tables=tables,
        needs=needs,
        lookback_days=lookback_days,
        ties=ties,
    )


def _recent(name: str, relation: str, table: str, column: str) -> ContextJoin:
    recent = f"CASE WHEN j.ts >= c.as_of - INTERVAL {RECENCY_DAYS} DAY THEN j.ts END"
    return _latest(name, relation, (table,), (f"{recent} AS {column}",), lookback_days=RECENCY_DAYS)


# Months elapsed on the current loan, and its amortised balance (30-year unless known).
_LOAN_START = "coalesce(j.ts, c.home_mortgage_started_at)"
_LOAN_AMOUNT = "coalesce(j.loan_amount, c.home_mortgage_amount)"
_LOAN_RATE = "coalesce(j.interest_rate, c.home_mortgage_rate)"
_LOAN_TERM_MONTHS = (
    "12.0 * CASE WHEN j.key IS NULL THEN coalesce(c.home_mortgage_term_years, 30) ELSE 30 END"
)
_MONTHS_PAID = (
    f"least(greatest(date_diff('day', {_LOAN_START}, c.as_of) / 30.44, 0), {_LOAN_TERM_MONTHS})"
)
_R = f"({_LOAN_RATE} / 1200.0)"
_BALANCE = (
    f"CASE WHEN {_LOAN_AMOUNT} IS NULL OR {_LOAN_AMOUNT} = 0 THEN 0.0 "
    f"ELSE {_LOAN_AMOUNT} * (pow(1 + {_R}, {_LOAN_TERM_MONTHS}) - pow(1 + {_R}, {_MONTHS_PAID})) "
    f"/ nullif(pow(1 + {_R}, {_LOAN_TERM_MONTHS}) - 1, 0) END"
)

CONTEXT_JOINS: tuple[ContextJoin, ...] = (
    _latest(
        "home",
        "SELECT owner_user_id AS key, purchased_at AS ts, sold_at, "
        + ", ".join(c for c in _HOME_COLUMNS)
        + " FROM properties WHERE is_primary_residence",
        ("properties",),
        tuple(f"{owned(c)} AS home_{c}" for c in _HOME_COLUMNS),
        # Two primary residences bought the same moment: the greater id, for want of better.
        ties=("property_id DESC NULLS LAST",),
    ),
    _latest(
        "loan",
        "SELECT user_id AS key, closed_at AS ts, transaction_type, property_id, loan_amount, "
        "interest_rate FROM transactions WHERE transaction_type IN ('BUY', 'REFINANCE') "
        "AND loan_amount IS NOT NULL AND interest_rate IS NOT NULL",
        ("transactions",),
        (
            # Only a loan on the home still owned counts; else the home's own mortgage does.
            f"CASE WHEN c.home_property_id IS NULL THEN NULL "
            f"WHEN j.property_id = c.home_property_id THEN {_LOAN_RATE} "
            f"ELSE c.home_mortgage_rate END AS loan_rate",
            f"CASE WHEN c.home_property_id IS NULL THEN NULL "
            f"WHEN j.property_id = c.home_property_id THEN {_LOAN_START} "
            f"ELSE c.home_mortgage_started_at END AS loan_started_at",
            f"CASE WHEN c.home_property_id IS NULL THEN NULL "
            f"WHEN j.property_id = c.home_property_id OR j.key IS NULL THEN {_BALANCE} "
            f"ELSE NULL END AS loan_balance",
        ),
        needs=("home",),
        # Deals closing the same moment: a refinance supersedes the purchase it follows; the
        # rest only makes the pick independent of row order.
        ties=(
            "transaction_type DESC NULLS LAST",
            "property_id DESC NULLS LAST",
            "loan_amount DESC NULLS LAST",
            "interest_rate DESC NULLS LAST",
        ),
    ),
    _latest(
        "market",
        "SELECT market_id AS key, published_at AS ts, month, median_price, days_on_market, "
        "inventory, months_supply, "
        "median_price / lag(median_price, 12) OVER w - 1 AS yoy_price_change, "
        "closed_sales / avg(closed_sales) OVER (w ROWS BETWEEN 11 PRECEDING AND CURRENT ROW) "
        "AS sales_seasonal_index, "
        "new_listings / avg(new_listings) OVER (w ROWS BETWEEN 11 PRECEDING AND CURRENT ROW) "
        "AS listings_seasonal_index "
        "FROM market_statistics WINDOW w AS (PARTITION BY market_id ORDER BY month)",
        ("market_statistics",),
        (
            "j.median_price AS market_median_price",
            "j.days_on_market AS market_days_on_market",
            "j.inventory AS market_inventory",
            "j.months_supply AS market_months_supply",
            "j.yoy_price_change AS market_yoy_price_change",
            "j.sales_seasonal_index AS market_sales_seasonal_index",
            "j.listings_seasonal_index AS market_listings_seasonal_index",
            # A hedonic estimate: the market's median scaled by size (sqft^0.75).
            "j.median_price * pow(c.home_sqft / 1800.0, 0.75) AS market_value_estimate",
        ),
        key="coalesce(c.home_market_id, c.user_market_id)",
        needs=("home",),
        # Months published together (a backfilled report): the latest month is the news.
        ties=("month DESC NULLS LAST",),
    ),
    ContextJoin(
        name="econ",
        # A week's figures are known once the week's day is over.
        relation="SELECT observed_on + INTERVAL 1 DAY AS ts, mortgage_rate_30y, "
        "unemployment_rate, lag(mortgage_rate_30y, 13) OVER (ORDER BY observed_on) AS rate_13w_ago "
        "FROM economic_indicators",
        key=None,
        columns=(
            "j.mortgage_rate_30y AS econ_rate_30y",
            "j.rate_13w_ago AS econ_rate_13w_ago",
            "j.unemployment_rate AS econ_unemployment_rate",
        ),
        tables=("economic_indicators",),
    ),
    _latest(
        "agent",
        "SELECT agent_id AS key, hired_at AS ts FROM agents",
        ("agents",),
        ("j.ts AS agent_hired_at",),
        key="c.user_agent_id",
    ),
    _latest(
        "agent_clients",
        # Running count of the agent's clients. The window's default RANGE frame counts rows
        # stamped at the same instant together, so tied rows carry one count and an ASOF tie
        # cannot pick a partial one.
        "SELECT agent_id AS key, created_at AS ts, "
        "count(*) OVER (PARTITION BY agent_id ORDER BY created_at) AS running FROM users "
        "WHERE agent_id IS NOT NULL",
        ("users",),
        ("j.running AS agent_clients_count",),
        key="c.user_agent_id",
    ),
    _latest(
        "agent_deals",
        "SELECT agent_id AS key, closed_at AS ts, "
        "count(*) OVER (PARTITION BY agent_id ORDER BY closed_at) AS running FROM transactions "
        "WHERE agent_id IS NOT NULL",
        ("transactions",),
        ("j.running AS agent_deals_count",),
        key="c.user_agent_id",
    ),
    ContextJoin(
        name="agent_deals_year_ago",
        relation="SELECT agent_id AS key, closed_at AS ts, "
        "count(*) OVER (PARTITION BY agent_id ORDER BY closed_at) AS running FROM transactions "
        "WHERE agent_id IS NOT NULL",
        key="c.user_agent_id",
        before="c.as_of - INTERVAL 365 DAY",
        columns=("j.running AS agent_deals_year_ago_count",),
        tables=("transactions",),
    ),
    _recent(
        "last_doc",
        "SELECT user_id AS key, occurred_at AS ts FROM document_access_events",
        "document_access_events",
        "last_doc_at",
    ),
    _recent(
        "last_open",
        "SELECT user_id AS key, opened_at AS ts FROM email_events WHERE opened_at IS NOT NULL",
        "email_events",
        "last_open_at",
    ),
    _recent(
        "last_session",
        "SELECT user_id AS key, started_at AS ts FROM platform_sessions",
        "platform_sessions",
        "last_session_at",
    ),
    _recent(
        "last_alert_click",
        "SELECT user_id AS key, clicked_at AS ts FROM alerts WHERE clicked_at IS NOT NULL",
        "alerts",
        "last_alert_click_at",
    ),
    _latest(
        "last_tx",
        "SELECT user_id AS key, closed_at AS ts, transaction_type FROM transactions",
        ("transactions",),
        ("j.ts AS last_tx_at", "j.transaction_type AS last_tx_type"),
    ),
)
