"""Labels: what happened strictly after each snapshot, read from the source tables.

Every query compares event times with the snapshot's ``as_of`` as ``> as_of`` and bounds them by
``as_of + horizon``; nothing stamped at or before the snapshot can become a label. Each returns
Arrow, one row per labelled snapshot, in (as_of, entity_id) order so results are reproducible.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from roiml.db.enums import TransactionType
from roiml.models.artifact import HORIZON_FEATURE

__all__ = [
    "MOVE_SPAN_DAYS",
    "TRANSACTION_CLASSES",
    "engagement_labels",
    "move_labels",
    "next_transaction_labels",
    "purchase_labels",
    "sale_labels",
]

# A move's two closings (sale and purchase, either first) fall within this many days of each other.
MOVE_SPAN_DAYS = 60

# Class order of the transaction-type model (its output columns).
TRANSACTION_CLASSES: tuple[str, ...] = (
    TransactionType.BUY.value,
    TransactionType.SELL.value,
    TransactionType.REFINANCE.value,
    TransactionType.INVESTMENT.value,
)

_ENGAGEMENT = """
    SELECT user_id, occurred_at AS ts FROM document_access_events
    UNION ALL SELECT user_id, opened_at FROM email_events WHERE opened_at IS NOT NULL
    UNION ALL SELECT user_id, started_at FROM platform_sessions
    UNION ALL SELECT user_id, clicked_at FROM alerts WHERE clicked_at IS NOT NULL
"""


def move_labels(con: duckdb.DuckDBPyConnection, horizon_days: int) -> pa.Table:
    """``label`` = 1 when the user closes a SELL or BUY in ``(as_of, as_of + horizon]``.

    ``mid_move`` = 1 when a SELL or BUY closed in the :data:`MOVE_SPAN_DAYS` up to the snapshot:
    a move's second closing (the purchase after a sale, or the sale after buying first) is then
    already in motion, not a prediction, so those snapshots are neither trained on nor scored.
    """
    return con.execute(
        f"""
        SELECT s.entity_id, s.as_of,
               CAST(count(t.user_id) FILTER (WHERE t.closed_at > s.as_of) > 0 AS INTEGER)
                   AS label,
               CAST(count(t.user_id) FILTER (WHERE t.closed_at <= s.as_of) > 0 AS INTEGER)
                   AS mid_move
        FROM snapshots s
        LEFT JOIN transactions t
          ON t.user_id = s.entity_id
         AND t.transaction_type IN ('SELL', 'BUY')
         AND t.closed_at > s.as_of - INTERVAL {MOVE_SPAN_DAYS} DAY
         AND t.closed_at <= s.as_of + INTERVAL {int(horizon_days)} DAY
        GROUP BY s.entity_id, s.as_of
        ORDER BY s.as_of, s.entity_id
        """
    ).to_arrow_table()


def next_transaction_labels(con: duckdb.DuckDBPyConnection, horizon_days: int) -> pa.Table:
    """For snapshots followed by a closing within the horizon: the first closing's type.

    ``label`` is the class index in :data:`TRANSACTION_CLASSES`; two closings on the same
    instant (a SELL and a BUY of one move) resolve to the first class in that order.
    """
    cases = " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(TRANSACTION_CLASSES))
    return con.execute(
        f"""
        SELECT s.entity_id, s.as_of,
               arg_min(CASE t.transaction_type {cases} END,
                       epoch_us(t.closed_at) * 10
                       + CASE t.transaction_type {cases} END) AS label
        FROM snapshots s
        JOIN transactions t
          ON t.user_id = s.entity_id
         AND t.closed_at > s.as_of
         AND t.closed_at <= s.as_of + INTERVAL {int(horizon_days)} DAY
        GROUP BY s.entity_id, s.as_of
        ORDER BY s.as_of, s.entity_id
        """
    ).to_arrow_table()


def engagement_labels(
    con: duckdb.DuckDBPyConnection, horizon_days: int, per_snapshot: int
) -> tuple[pa.Table, pa.Table]:
    """The engagements of ``(as_of, as_of + horizon]``: training events and per-snapshot slots.

    Returns ``(events, slots)``. ``events`` has up to ``per_snapshot`` engagements per snapshot
    (a deterministic hash sample) with ``weekday`` (0 = Monday) and ``hour``; ``slots`` has, per
    snapshot with any engagement, the list of every engagement's slot ``weekday * 24 + hour``,
    which is what the hit rate is scored on.
    """
    window = f"""
        WITH engagement AS ({_ENGAGEMENT}),
        hits AS (
            SELECT s.entity_id, s.as_of, e.ts,
                   isodow(e.ts) - 1 AS weekday, hour(e.ts) AS hour
            FROM snapshots s
            JOIN engagement e
              ON e.user_id = s.entity_id
             AND e.ts > s.as_of
             AND e.ts <= s.as_of + INTERVAL {int(horizon_days)} DAY
        )
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE engagement_hits AS {window} SELECT * FROM hits")
    events = con.execute(
        f"""
        SELECT entity_id, as_of, weekday, hour FROM (
            SELECT *, row_number() OVER (
                PARTITION BY entity_id, as_of ORDER BY hash(entity_id, ts), ts
            ) AS n
            FROM engagement_hits
        ) WHERE n <= {int(per_snapshot)}
        ORDER BY as_of, entity_id, weekday, hour
        """
    ).to_arrow_table()
    slots = con.execute(
        """
        SELECT entity_id, as_of, list(weekday * 24 + hour ORDER BY ts) AS slots
        FROM engagement_hits
        GROUP BY entity_id, as_of
        ORDER BY as_of, entity_id
        """
    ).to_arrow_table()
    con.execute("DROP TABLE engagement_hits")
    return events, slots


def sale_labels(con: duckdb.DuckDBPyConnection, horizon_days: int) -> pa.Table:
    """Sales of a primary residence paired with the seller's snapshots up to the horizon before.

    One row per (snapshot, sale) with ``0 < sale - as_of <= horizon``, while the seller owned
    the home: ``price``, ``sold_at``, ``property_id`` and ``horizon_months`` (an input of the
    value model: how far ahead the value is asked for).
    """
    # The sales are joined to their homes first, in a materialised CTE, so the snapshots meet
    # one relation on an equality: with Arrow scans DuckDB has no row estimates and otherwise
    # planned homes x snapshots as a nested loop on ``purchased_at <= as_of`` (480M pairs at
    # 3,000 users, an out-of-memory kill at 50,000).
    return con.execute(
        f"""
        WITH sales AS MATERIALIZED (
            SELECT t.user_id, t.property_id, t.closed_at, t.price, p.purchased_at
            FROM transactions t
            JOIN properties p ON p.property_id = t.property_id AND p.is_primary_residence
            WHERE t.transaction_type = 'SELL' AND t.price > 0
        )
        SELECT s.entity_id, s.as_of, t.property_id, t.closed_at AS sold_at, t.price,
               date_diff('day', s.as_of, t.closed_at) / 30.4375 AS {HORIZON_FEATURE}
        FROM sales t
        JOIN snapshots s
          ON s.entity_id = t.user_id
         AND s.as_of < t.closed_at
         AND s.as_of >= t.closed_at - INTERVAL {int(horizon_days)} DAY
         AND s.as_of >= t.purchased_at
        ORDER BY s.as_of, s.entity_id, t.property_id
        """
    ).to_arrow_table()


def purchase_labels(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every priced purchase seen from its buyer, as of the midnight after closing, horizon 0.

    For sales records without owner histories (public data sets): the value at the time of
    sale, from what the buyer's home and market looked like. A home sold two or three times
    gives two or three rows, each its own buyer's; their features need the home as each buyer
    bought it (:func:`roiml.models.ownership.purchase_history`), since ``properties`` describes
    it by its latest buyer only. Features derived from the purchase price are the label
    itself here, which is why that config excludes them.
    """
    return con.execute(
        f"""
        SELECT t.user_id AS entity_id,
               CAST(CAST(t.closed_at AS DATE) + INTERVAL 1 DAY AS TIMESTAMP) AS as_of,
               t.property_id, t.closed_at AS sold_at, t.price, 0.0 AS {HORIZON_FEATURE}
        FROM transactions t
        WHERE t.transaction_type IN ('BUY', 'INVESTMENT') AND t.price > 0
          AND t.property_id IN (SELECT property_id FROM properties)
        ORDER BY as_of, entity_id, t.property_id
        """
    ).to_arrow_table()
