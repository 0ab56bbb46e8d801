"""Each priced purchase as the ownership it began: the homes as every buyer bought them.

``properties`` holds one row per home, described by its current owner: the latest buyer, the
latest purchase price. A home sold three times in a sales file has three buyers, and the two
earlier ones own no ``properties`` row, so the features of their purchase (read through
``owner_user_id``, see ``roiml.features.definitions.context``) would all be null, while the
current row carries the latest price. Training on every sale needs the home as of each sale:
one row per priced purchase, owned by its buyer from ``closed_at`` until the next purchase.

Characteristics (size, rooms, year built, location) are the home's only recorded ones, taken as
unchanged; what belongs to the current owner alone (mortgage, tax) is kept on the current
owner's row only; an earlier owner's row is sold at the next purchase, so no later sale's date
or price reaches an earlier sale's features.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from roiml.features.sources import SourceTables

__all__ = ["PURCHASE_TYPES", "purchase_history"]

# The transactions that begin an ownership.
PURCHASE_TYPES = ("BUY", "INVESTMENT")
# Columns that describe the current owner's deal, not the home.
_OWNERS_ONLY = (
    "mortgage_amount",
    "mortgage_rate",
    "mortgage_term_years",
    "mortgage_started_at",
    "tax_annual",
)


def purchase_history(sources: SourceTables) -> SourceTables:
    """``sources`` with ``properties`` replaced by one row per priced purchase (its buyer as
    owner, its date and price as the purchase, sold at the home's next purchase), plus the
    homes whose current owner bought without a priced purchase on record, as they were."""
    properties = sources.tables["properties"]
    columns = properties.column_names
    owner_is_buyer = "b.user_id = p.owner_user_id AND b.closed_at = p.purchased_at"
    replaced = {
        "owner_user_id": "b.user_id",
        "purchased_at": "b.closed_at",
        "purchase_price": "b.price",
        "sold_at": f"CASE WHEN {owner_is_buyer} THEN p.sold_at ELSE b.next_at END",
        **{c: f"CASE WHEN {owner_is_buyer} THEN p.{c} END" for c in _OWNERS_ONLY},
    }
    select = ", ".join(
        f"CAST({replaced[c]} AS {_duck_type(properties.schema.field(c).type)}) AS {c}"
        if c in replaced
        else f"p.{c}"
        for c in columns
    )
    types = ", ".join(f"'{t}'" for t in PURCHASE_TYPES)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("properties", properties)
    con.register("transactions", sources.tables["transactions"])
    table = con.execute(
        f"""
        WITH buys AS (
            SELECT user_id, property_id, closed_at, price,
                   lead(closed_at) OVER (
                       PARTITION BY property_id ORDER BY closed_at, user_id
                   ) AS next_at
            FROM transactions
            WHERE transaction_type IN ({types}) AND price > 0 AND property_id IS NOT NULL
        )
        SELECT {select} FROM properties p JOIN buys b ON b.property_id = p.property_id
        UNION ALL
        SELECT {", ".join(f"p.{c}" for c in columns)} FROM properties p
        WHERE NOT EXISTS (
            SELECT 1 FROM buys b WHERE b.property_id = p.property_id AND {owner_is_buyer}
        )
        """
    ).to_arrow_table()
    con.close()
    return SourceTables(
        tables={**sources.tables, "properties": table.cast(properties.schema)},
        parquet=dict(sources.parquet),
    )


def _duck_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type a column of ``arrow_type`` is cast back to (then to Arrow exactly)."""
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "DOUBLE"
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    return "VARCHAR"
