"""Turn one simulated block into rows of the source tables and of the ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from roiml.world.engagement import Engagement
from roiml.world.journeys import KIND_NAMES, Journeys
from roiml.world.macro import Macro
from roiml.world.population import Population
from roiml.world.truth import MOVE_DAILY, P_MOVE, best_contact_slot, move_probability

__all__ = ["BlockTables", "assemble_block"]


@dataclass
class BlockTables:
    """Rows of one block: ``source`` for the database, ``truth`` for Parquet."""

    source: dict[str, pa.Table]
    truth: dict[str, pa.Table]


def _day_timestamps(macro: Macro, window_day: np.ndarray, rng: np.random.Generator) -> pa.Array:
    # Closings happen in office hours.
    seconds = rng.integers(13 * 3600, 17 * 3600, len(window_day))
    base = np.datetime64(macro.origin, "s") + np.timedelta64(macro.start_offset, "D")
    moments = base + (window_day.astype(np.int64) * 86400 + seconds).astype("timedelta64[s]")
    return pa.array(moments.astype("datetime64[us]"))


def _before_end(table: pa.Table, columns: tuple[str, ...], end: np.datetime64) -> pa.Table:
    """Null out follow-ups (opens, clicks) that would happen after the world ends."""
    limit = pa.scalar(end.astype("datetime64[us]").item(), pa.timestamp("us"))
    for name in columns:
        column = table[name]
        kept = pc.if_else(pc.less(column, limit), column, pa.scalar(None, column.type))
        table = table.set_column(table.schema.get_field_index(name), name, kept)
    return table


def _with_user_ids(table: pa.Table, user_ids: pa.Array) -> pa.Table:
    idx = table["user_idx"]
    return table.drop_columns(["user_idx"]).add_column(0, "user_id", user_ids.take(idx))


def _property_at(
    pop: Population,
    journeys: Journeys,
    purchased_at: np.ndarray,
    users: np.ndarray,
    moments: np.ndarray,
) -> np.ndarray:
    """The primary home each user owned at each moment: the latest bought before it.

    ``purchased_at`` holds the purchase moment of each of ``journeys.new_properties``; a home
    counts from its closing on, not from the start of its closing day.
    """
    home = pop.properties["property_id"].to_numpy(zero_copy_only=False)[users].astype(object)
    new = journeys.new_properties
    primary = new["is_primary_residence"].to_numpy(zero_copy_only=False).astype(bool)
    if not primary.any() or len(users) == 0:
        return home
    seconds = np.timedelta64(1, "s")
    base = purchased_at[primary].min()
    span = np.int64(1 << 34)  # seconds: over five centuries
    keys = new["user_idx"].to_numpy()[primary] * span + (purchased_at[primary] - base) // seconds
    order = np.argsort(keys)
    keys = keys[order]
    ids = new["property_id"].to_numpy(zero_copy_only=False)[primary][order]
    probe = users.astype(np.int64) * span + np.maximum((moments - base) // seconds, -1)
    pos = np.searchsorted(keys, probe, side="left") - 1  # the last purchase strictly before
    same_user = (pos >= 0) & (keys[np.maximum(pos, 0)] // span == users)
    return np.where(same_user, ids[np.maximum(pos, 0)], home)


def _closed_at(closings: pa.Table, types: list[str], property_ids: pa.Array) -> pa.Array:
    """The closing moment of the ``types`` transaction of each property (null if none)."""
    chosen = closings.filter(pc.is_in(closings["transaction_type"], pa.array(types)))
    position = pc.index_in(property_ids, value_set=chosen["property_id"])
    return pc.take(chosen["closed_at"], position)


def _new_property_rows(
    pop: Population, journeys: Journeys, macro: Macro, closings: pa.Table, rng: np.random.Generator
) -> pa.Table:
    new = journeys.new_properties
    m = new.num_rows
    sqft = new["sqft"].to_numpy()
    ptype = new["property_type"].to_numpy(zero_copy_only=False)
    bedrooms = np.clip(np.round(sqft / 650 + rng.normal(0.3, 0.6, m)), 1, 7).astype(np.int64)
    is_condo_like = (ptype == "CONDO") | (ptype == "TOWNHOUSE")
    # Bought at the moment its BUY (or INVESTMENT) transaction closed.
    purchased = _closed_at(closings, ["BUY", "INVESTMENT"], new["property_id"])
    loan = new["mortgage_amount"].to_numpy()
    return pa.table(
        {
            "property_id": new["property_id"],
            "owner_user_id": pa.array(pop.user_ids).take(new["user_idx"]),
            "market_id": macro.market_ids[new["market_idx"].to_numpy()],
            "is_primary_residence": new["is_primary_residence"],
            "property_type": new["property_type"],
            "bedrooms": bedrooms,
            "bathrooms": np.clip(
                np.round((bedrooms * 0.6 + rng.normal(0.4, 0.4, m)) * 2) / 2, 1, 6
            ),
            "sqft": sqft.round().astype(np.int64),
            "lot_sqft": pa.array(
                np.where(is_condo_like, np.nan, (sqft * rng.uniform(2, 8, m)).round()),
                pa.int64(),
                from_pandas=True,
            ),
            "year_built": np.round(rng.normal(1995, 20, m))
            .clip(1900, macro.origin.year + 40)
            .astype(np.int64),
            "has_pool": rng.random(m) < 0.12,
            "garage_spaces": np.where(ptype == "CONDO", 0, rng.integers(0, 4, m)),
            "hoa_monthly": pa.array(
                np.where(is_condo_like, rng.uniform(150, 650, m).round(), np.nan), from_pandas=True
            ),
            "tax_annual": (new["purchase_price"].to_numpy() * rng.uniform(0.008, 0.016, m)).round(),
            "purchased_at": purchased,
            "purchase_price": new["purchase_price"].to_numpy().round(-2),
            "mortgage_amount": loan.round(-2),
            "mortgage_rate": new["mortgage_rate"].to_numpy().round(3),
            "mortgage_term_years": np.full(m, 30),
            "mortgage_started_at": purchased,
            "sold_at": pa.nulls(m, pa.timestamp("us")),
        }
    )


def _mark_sold(properties: pa.Table, closings: pa.Table) -> pa.Table:
    """``sold_at``: the moment the home's SELL transaction closed (null while unsold)."""
    column = properties.schema.get_field_index("sold_at")
    sold_at = _closed_at(closings, ["SELL"], properties["property_id"])
    return properties.set_column(column, "sold_at", sold_at.cast(pa.timestamp("us")))


def _simulated_transactions(
    pop: Population, journeys: Journeys, macro: Macro, rng: np.random.Generator
) -> pa.Table:
    """The closings of the window (the homes' purchase and sale moments come from them)."""
    tx = journeys.transactions
    user_ids = pa.array(pop.user_ids)
    agent_of = pop.users["agent_id"]
    return pa.table(
        {
            "user_id": user_ids.take(tx["user_idx"]),
            "property_id": tx["property_id"],
            "agent_id": agent_of.take(tx["user_idx"]),
            "transaction_type": tx["transaction_type"],
            "opened_at": _day_timestamps(macro, tx["opened_day"].to_numpy(), rng),
            "closed_at": _day_timestamps(macro, tx["closed_day"].to_numpy(), rng),
            "price": pc.round(tx["price"], -2),
            "loan_amount": pc.round(tx["loan_amount"], -2),
            "interest_rate": pc.round(tx["interest_rate"], 3),
        }
    )


def _value_paths(
    pop: Population, journeys: Journeys, macro: Macro, start: date, days: int
) -> pa.Table:
    """True value of every home at each month start in the window."""
    end = np.datetime64(start, "D") + np.timedelta64(days, "D")
    month_starts = np.arange(
        np.datetime64(start, "M"), end.astype("datetime64[M]") + 1, np.timedelta64(1, "M")
    ).astype("datetime64[D]")
    month_starts = month_starts[month_starts < end]
    month_starts = month_starts[month_starts >= np.datetime64(start, "D")]
    abs_days = (month_starts - np.datetime64(macro.origin, "D")).astype(np.int64)
    new = journeys.new_properties
    ids = np.concatenate(
        [
            pop.properties["property_id"].to_numpy(zero_copy_only=False),
            new["property_id"].to_numpy(zero_copy_only=False),
        ]
    )
    market = np.concatenate([pop.market, new["market_idx"].to_numpy()])
    bought = np.concatenate(
        [pop.purchase_day, macro.start_offset + new["purchased_day"].to_numpy()]
    )
    price = np.concatenate([pop.purchase_price, new["purchase_price"].to_numpy()])
    drift = np.concatenate([pop.value_drift, new["value_drift"].to_numpy()])
    ratio = (
        macro.market_median[market[:, None], abs_days[None, :]]
        / macro.market_median[market, bought][:, None]
    )
    years = (abs_days[None, :] - bought[:, None]) / 365.25
    value = price[:, None] * ratio * np.exp(drift[:, None] * years)
    owned = abs_days[None, :] >= bought[:, None]
    rows, cols = np.nonzero(owned)
    return pa.table(
        {
            "property_id": ids[rows],
            "month": pa.array(month_starts[cols]),
            "true_value": value[rows, cols].round(-2),
        }
    )


def assemble_block(
    pop: Population,
    journeys: Journeys,
    engagement: Engagement,
    macro: Macro,
    start: date,
    days: int,
    rng: np.random.Generator,
) -> BlockTables:
    """Source rows (without tenant) and truth rows of one block."""
    user_ids = pa.array(pop.user_ids)
    end = np.datetime64(start, "D") + np.timedelta64(days, "D")
    closings = _simulated_transactions(pop, journeys, macro, rng)
    new_homes = _new_property_rows(pop, journeys, macro, closings, rng)
    properties = pa.concat_tables([pop.properties, new_homes], promote_options="permissive")
    properties = _mark_sold(properties, closings)
    docs = engagement.document_access_events
    home = _property_at(
        pop,
        journeys,
        new_homes["purchased_at"].to_numpy(zero_copy_only=False),
        docs["user_idx"].to_numpy(),
        docs["occurred_at"].to_numpy(),
    )
    docs = docs.add_column(1, "property_id", pa.array(home))
    transactions = pa.concat_tables(
        [pop.purchases, pop.prior_refinances, closings], promote_options="permissive"
    )
    source = {
        "users": pop.users,
        "properties": properties,
        "transactions": transactions,
        "document_access_events": _with_user_ids(docs, user_ids),
        "email_events": _with_user_ids(
            _before_end(engagement.email_events, ("opened_at", "clicked_at"), end), user_ids
        ),
        "platform_sessions": _with_user_ids(engagement.platform_sessions, user_ids),
        "alerts": _with_user_ids(_before_end(engagement.alerts, ("clicked_at",), end), user_ids),
        "searches": _with_user_ids(engagement.searches, user_ids),
    }
    probability = move_probability(journeys)
    n = len(pop.user_ids)
    day_dates = np.datetime64(start, "D") + np.arange(days).astype("timedelta64[D]")
    best_weekday, best_hour = best_contact_slot(pop.pref_weekday, pop.pref_hour)
    origin = np.datetime64(start, "D")
    truth = {
        "users": pa.table(
            {
                "user_id": user_ids,
                "active": pop.active,
                "propensity": pop.propensity,
                "engagement": pop.engagement,
                "open_affinity": pop.open_affinity,
                "pref_weekday": pop.pref_weekday,
                "pref_hour": pop.pref_hour,
                "hour_habit": pop.hour_habit,
                "best_weekday": best_weekday,
                "best_hour": best_hour,
                "p_sell_only": pop.p_sell_only,
                "p_buy_first": pop.p_buy_first,
            }
        ),
        "journeys": pa.table(
            {
                "user_id": user_ids.take(pa.array(journeys.user)),
                "kind": KIND_NAMES[journeys.kind]
                if len(journeys.kind)
                else np.array([], dtype=str),
                "decided_on": pa.array(origin + journeys.decision_day.astype("timedelta64[D]")),
                "first_close_on": pa.array(origin + journeys.close_day.astype("timedelta64[D]")),
                "first_type": journeys.first_type,
                "buy_first": journeys.buy_first,
                "sell_only": journeys.sell_only,
            }
        ),
        MOVE_DAILY: pa.table(
            {
                "user_id": pa.array(np.repeat(pop.user_ids, days)).dictionary_encode(),
                "day": pa.array(np.tile(day_dates, n)),
                "move_hazard": journeys.move_hazard.astype(np.float32).ravel(),
                P_MOVE: pa.array(probability.ravel(), from_pandas=True),
            }
        ),
        "property_values": _value_paths(pop, journeys, macro, start, days),
    }
    return BlockTables(source=source, truth=truth)
