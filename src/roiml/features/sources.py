"""Source rows for the engine: loaded from the SQL store (one tenant, a time range, optionally a
few entities) or read from a Parquet extract, and registered as DuckDB views by table name.

This is the only adapter between the engine and the relational store; the engine itself never
touches a database connection.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine, text

from roiml.db import Base
from roiml.errors import FeatureError
from roiml.features.definitions.comparables import (
    COMPARABLE_BOX_DEGREES,
    COMPARABLE_LOOKBACK_DAYS,
    SALE_TYPES,
)
from roiml.ingest.contract import table_contract

__all__ = [
    "DAILY_FLOW_TABLES",
    "ENTITY_KEYS",
    "TIME_COLUMNS",
    "SourceTables",
    "load_sources",
    "parquet_sources",
]

# Per source table: the column naming the user, and its time columns (the first is the one the
# row is stamped with; a row is needed if any of them falls inside the loaded range).
ENTITY_KEYS: dict[str, str] = {
    "users": "user_id",
    "properties": "owner_user_id",
    "transactions": "user_id",
    "document_access_events": "user_id",
    "email_events": "user_id",
    "platform_sessions": "user_id",
    "alerts": "user_id",
    "searches": "user_id",
}
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "document_access_events": ("occurred_at",),
    "email_events": ("sent_at", "opened_at", "clicked_at"),
    "platform_sessions": ("started_at",),
    "alerts": ("sent_at", "clicked_at"),
    "searches": ("searched_at",),
    "transactions": ("closed_at",),
    "properties": ("purchased_at",),
}
# Tables whose rows arrive as a steady daily flow (homeowners acting), so a day's row count
# tells a partial load (features/arrivals.py). Emails arrive in campaign sends on calendar
# days, transactions and purchases a few a day, and document reads surge twofold in the tax
# season and fall back overnight when it ends: their counts say nothing of a load.
DAILY_FLOW_TABLES: tuple[str, ...] = ("platform_sessions", "alerts", "searches")
# Agent-level features count other users' rows of the same agent; of those rows they read only
# these columns (the agent_* joins of definitions/context.py), so a few-entity load sends the
# rest as nulls: the agent's book is most of the rows one entity's load carries.
_AGENT_WIDE: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "agent_id", "created_at"),
    "transactions": ("user_id", "agent_id", "closed_at"),
}
# Comparable sales (definitions/comparables.py) read other homeowners' sales in the window,
# near the entities' homes or in their markets; a few-entity load brings the priced sales of the
# entities' homes' markets, with only these columns (the rest null, owner and user included,
# so no other feature can count them).
_COMPARABLE_WIDE: dict[str, tuple[str, ...]] = {
    "transactions": ("property_id", "transaction_type", "closed_at", "price"),
    "properties": ("property_id", "market_id", "sqft", "latitude", "longitude", "purchased_at"),
}
# The JSON column of a tenant's declared columns (roiml.ingest.extensions), on the tables that
# have one.
_ATTRIBUTES = "attributes"
# Above this many entities, filter in Arrow rather than in an IN (...) list.
_MAX_IN_LIST = 500


@dataclass
class SourceTables:
    """Source rows by table name: Arrow tables, or Parquet paths read lazily by DuckDB."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    parquet: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        """The tables available."""
        return set(self.tables) | set(self.parquet)

    def register(
        self, con: duckdb.DuckDBPyConnection, only: Collection[str] | None = None
    ) -> list[str]:
        """Make the tables (those named in ``only``, else all) visible to ``con`` under their
        own names; return the names registered."""
        wanted = self.names if only is None else self.names & set(only)
        for name, table in self.tables.items():
            if name in wanted:
                con.register(name, table)
        for name, path in self.parquet.items():
            if name not in wanted:
                continue
            escaped = path.replace("'", "''")
            # The folders above may look like hive partitions (tenant=, date=); they are not data.
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS "
                f"SELECT * FROM read_parquet('{escaped}', hive_partitioning = false)"
            )
        return sorted(wanted)


def parquet_sources(directory: Path) -> SourceTables:
    """Source tables extracted to ``<directory>/<table>.parquet`` (or ``<table>/*.parquet``)."""
    found: dict[str, str] = {}
    for table in (*ENTITY_KEYS, "agents", "market_statistics", "economic_indicators"):
        single = directory / f"{table}.parquet"
        if single.exists():
            found[table] = str(single)
        elif (directory / table).is_dir():
            found[table] = str(directory / table / "*.parquet")
    if not found:
        raise FeatureError(f"no Parquet source tables under {directory}")
    return SourceTables(parquet=found)


def load_sources(
    engine: Engine,
    tenant_id: str,
    lookback_days: Mapping[str, int | None],
    as_of_min: datetime,
    as_of_max: datetime,
    entity_ids: Sequence[str] | None = None,
) -> SourceTables:
    """Load from the SQL store what a computation as of ``[as_of_min, as_of_max]`` can see.

    Per table, rows stamped before ``as_of_max`` and (for tables with a lookback) touching the
    ``lookback_days`` before ``as_of_min``. With ``entity_ids``, only those users' rows (plus, for
    agent-level features, the rows of their agents' other clients, and of the tenant-wide tables
    only the agents and markets those users can reach).
    """
    if entity_ids is not None and len(entity_ids) <= _MAX_IN_LIST:
        queries = _few_entity_queries(tenant_id, lookback_days, as_of_min, as_of_max, entity_ids)
        with engine.connect() as conn:
            return SourceTables(tables=_fetch_few(conn, queries))
    loaded: dict[str, pa.Table] = {}
    with engine.connect() as conn:
        agents: list[str] = []
        if entity_ids is not None:
            users = _fetch(conn, "users", "tenant_id = :tenant", {"tenant": tenant_id})
            users = users.filter(pc.is_in(users["user_id"], value_set=pa.array(list(entity_ids))))
            agents = pc.unique(users["agent_id"].drop_null()).to_pylist()
        for table, days in lookback_days.items():
            clauses, params = _time_clauses(table, days, as_of_min, as_of_max)
            rows = _fetch(
                conn,
                table,
                " AND ".join(["tenant_id = :tenant", *clauses]),
                {"tenant": tenant_id, **params},
            )
            key = ENTITY_KEYS.get(table)
            if entity_ids is not None and key:
                keep = pc.is_in(rows[key], value_set=pa.array(list(entity_ids)))
                if table in _AGENT_WIDE and agents:
                    in_agents = pc.is_in(rows["agent_id"], value_set=pa.array(agents))
                    keep = pc.or_kleene(keep, in_agents)
                loaded[table] = rows.filter(keep)
                # Other homeowners' rows kept whole for comparable sales: their keys are no
                # entity's, so no other feature reads them.
                loaded[f"{table}:all"] = rows
            else:
                loaded[table] = rows
    if entity_ids is not None and _needs_comparables(lookback_days):
        _keep_comparable_sales(loaded, as_of_min)
    return SourceTables(tables={k: v for k, v in loaded.items() if ":" not in k})


def _needs_comparables(lookback_days: Mapping[str, int | None]) -> bool:
    """Whether the computation may read comparable sales: it reads both of their tables."""
    return all(table in lookback_days for table in _COMPARABLE_WIDE)


def _keep_comparable_sales(loaded: dict[str, pa.Table], as_of_min: datetime) -> None:
    """Add to the entities' ``transactions`` and ``properties`` the other priced sales of the
    comparable window, and their homes (a many-entity load has the tenant's rows at hand)."""
    every, homes = loaded.get("transactions:all"), loaded.get("properties:all")
    if every is None or homes is None:
        return
    since = pa.scalar(as_of_min - timedelta(days=COMPARABLE_LOOKBACK_DAYS), pa.timestamp("us"))
    sale = pc.and_(
        pc.and_(
            pc.is_in(every["transaction_type"], value_set=pa.array(SALE_TYPES)),
            pc.greater(every["price"], 0),
        ),
        pc.greater_equal(every["closed_at"], since),
    )
    taken = pc.is_in(every["user_id"], value_set=pc.unique(loaded["transactions"]["user_id"]))
    extra = every.filter(pc.and_(pc.fill_null(sale, False), pc.invert(taken)))
    loaded["transactions"] = pa.concat_tables([loaded["transactions"], extra])
    sold = pc.is_in(homes["property_id"], value_set=pc.unique(extra["property_id"]))
    owned = pc.is_in(
        homes["owner_user_id"], value_set=pc.unique(loaded["properties"]["owner_user_id"])
    )
    more = homes.filter(pc.and_(sold, pc.invert(pc.fill_null(owned, False))))
    loaded["properties"] = pa.concat_tables([loaded["properties"], more])


def _time_clauses(
    table: str, days: int | None, as_of_min: datetime, as_of_max: datetime
) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions (and their parameters) keeping the rows of ``table`` a computation as of
    ``[as_of_min, as_of_max]`` can see: stamped before the last as-of, inside the lookback."""
    times = TIME_COLUMNS.get(table)
    if not times:
        return [], {}
    clauses = [f"{times[0]} < :until"]
    params: dict[str, Any] = {"until": as_of_max}
    if days is not None:
        # An as-of within the lookback of year 1 would overflow: nothing is older than that.
        earliest = datetime.min.replace(tzinfo=as_of_min.tzinfo)
        lookback = timedelta(days=days)
        params["since"] = as_of_min - lookback if as_of_min - earliest > lookback else earliest
        clauses.append("(" + " OR ".join(f"{t} >= :since" for t in times) + ")")
    return clauses, params


def _few_entity_queries(
    tenant_id: str,
    lookback_days: Mapping[str, int | None],
    as_of_min: datetime,
    as_of_max: datetime,
    entity_ids: Sequence[str],
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per table, one SELECT (named parameters) for the rows a few entities can reach.

    Every query stands alone - the entities' agents and markets are subqueries, not a first
    round trip - so all of them can go to the server at once. Each keeps the batch's rows and
    their multiplicity: an OR of an index condition and a subquery would make PostgreSQL scan
    the table, so agent-wide rows come from a second UNION ALL branch excluding the first's.
    """
    ids = {f"e{i}": v for i, v in enumerate(entity_ids)}
    in_ids = ", ".join(f":{name}" for name in ids)
    their = "SELECT {column} FROM users WHERE tenant_id = :tenant AND user_id IN (" + in_ids + ")"
    their_agents = their.format(column="agent_id")
    # Tenant-wide tables are read by key only: agents by the user's agent, markets by the
    # user's or one of their homes' market (definitions/context.py). Other keys cannot match.
    reachable = {
        "agents": f"agent_id IN ({their_agents})",
        "market_statistics": f"market_id IN ({their.format(column='market_id')} UNION SELECT "
        f"market_id FROM properties WHERE tenant_id = :tenant AND owner_user_id IN ({in_ids}))",
    }
    queries: dict[str, tuple[str, dict[str, Any]]] = {}
    comparables = _needs_comparables(lookback_days)
    for table, days in lookback_days.items():
        clauses, params = _time_clauses(table, days, as_of_min, as_of_max)
        params.update(tenant=tenant_id, **ids)
        columns = _select_list(table)
        where = " AND ".join(["tenant_id = :tenant", *clauses])
        key = ENTITY_KEYS.get(table)
        if key:
            sql = f"SELECT {columns} FROM {table} WHERE {where} AND {key} IN ({in_ids})"
            if table in _AGENT_WIDE:
                read = _AGENT_WIDE[table]
                others = ", ".join(
                    f.name if f.name in read else f"NULL AS {f.name}" for f in _schema(table)
                )
                sql += (
                    f" UNION ALL SELECT {others} FROM {table} WHERE {where} "
                    f"AND agent_id IN ({their_agents}) AND {key} NOT IN ({in_ids})"
                )
        elif table in reachable:
            sql = f"SELECT {columns} FROM {table} WHERE {where} AND {reachable[table]}"
        else:
            sql = f"SELECT {columns} FROM {table} WHERE {where}"
        if comparables and table in _COMPARABLE_WIDE:
            sql += _comparable_branch(table, where, in_ids)
            params.update(
                comps_since=as_of_min - timedelta(days=COMPARABLE_LOOKBACK_DAYS),
                comps_until=as_of_max,
                comps_dlat=COMPARABLE_BOX_DEGREES,
                comps_dlon=COMPARABLE_BOX_DEGREES / math.cos(math.radians(85)),
            )
        queries[table] = (sql, params)
    return queries


def _comparable_branch(table: str, where: str, in_ids: str) -> str:
    """A UNION ALL branch adding to ``table``'s few-entity rows the priced sales of the
    comparable window that the entities' homes can reach (and the homes sold): those of the
    homes' markets, and those within a box around each home a little wider than the radius (a
    neighbour across a market's border), other homeowners' only, with the columns comparables
    read and the rest null.

    Its cost is the markets' sales of the window: every computed vector of a home reads them.
    """
    read = _COMPARABLE_WIDE[table]
    others = ", ".join(f.name if f.name in read else f"NULL AS {f.name}" for f in _schema(table))
    types = ", ".join(f"'{t}'" for t in SALE_TYPES)
    sales = (
        "SELECT property_id FROM transactions WHERE tenant_id = :tenant "
        f"AND transaction_type IN ({types}) AND price > 0 "
        "AND closed_at >= :comps_since AND closed_at < :comps_until"
    )
    owned = f"tenant_id = :tenant AND owner_user_id IN ({in_ids})"
    # The homes within reach, as a UNION of the two ways to reach one, each led by its index
    # (migration 0010): an OR of the two made PostgreSQL walk every sale of the window and test
    # each home against both (8,856 sales, 50 ms, on a 50,000-homeowner tenant). No
    # trigonometry (SQLite may lack it): the box is as wide as the radius at 85 degrees of
    # latitude, and homes beyond that take every longitude.
    homes = (
        "SELECT property_id FROM properties WHERE tenant_id = :tenant "
        f"AND market_id IN (SELECT market_id FROM properties WHERE {owned}) "
        "UNION SELECT b.property_id FROM properties h JOIN properties b "
        "ON b.tenant_id = :tenant "
        "AND b.latitude BETWEEN h.latitude - :comps_dlat AND h.latitude + :comps_dlat "
        "AND (b.longitude BETWEEN h.longitude - :comps_dlon AND h.longitude + :comps_dlon "
        f"OR abs(h.latitude) > 85) WHERE h.tenant_id = :tenant AND h.owner_user_id IN ({in_ids})"
    )
    if table == "transactions":
        return (
            f" UNION ALL SELECT {others} FROM transactions WHERE {where} "
            f"AND user_id NOT IN ({in_ids}) AND transaction_type IN ({types}) AND price > 0 "
            f"AND closed_at >= :comps_since AND property_id IN ({homes})"
        )
    return (
        f" UNION ALL SELECT {others} FROM properties p WHERE {where} "
        f"AND owner_user_id NOT IN ({in_ids}) AND property_id IN ({homes}) "
        f"AND property_id IN ({sales})"
    )


def _fetch_few(conn: Any, queries: Mapping[str, tuple[str, dict[str, Any]]]) -> dict[str, pa.Table]:
    """Run ``queries`` (few rows each) and build each table from the rows in Arrow."""
    driver = conn.connection.driver_connection
    results: dict[str, list[tuple[Any, ...]]] = {}
    if conn.dialect.name == "postgresql":
        # Pipeline mode sends every query before reading any result: one round trip in all
        # rather than one per table, which is most of a few-row query's time.
        cursors = {}
        with driver.pipeline():
            for table, (sql, params) in queries.items():
                cursor = driver.cursor()
                cursor.execute(_pyformat(sql), params)
                cursors[table] = cursor
        for table, cursor in cursors.items():
            results[table] = cursor.fetchall()
            cursor.close()
        return {t: _from_rows(rows, _schema(t), postgres=True) for t, rows in results.items()}
    cursor = driver.cursor()
    try:
        for table, (sql, params) in queries.items():
            results[table] = cursor.execute(sql, params).fetchall()
    finally:
        cursor.close()
    return {t: _from_rows(rows, _schema(t), postgres=False) for t, rows in results.items()}


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """``sql`` with its ``:name`` parameters as psycopg's ``%(name)s``; the few-entity queries
    repeat from one request to the next, so the rewrite is done once per text."""
    return re.sub(r":(\w+)", r"%(\1)s", sql)


@cache
def _schema(table: str) -> pa.Schema:
    """The columns the engine gets of ``table``: its import contract without the tenant, and
    the ``attributes`` JSON (the tenant's declared columns, features/declared.py) as text."""
    schema = table_contract(table).arrow_schema()
    fields = [f for f in schema if f.name not in ("tenant_id", _ATTRIBUTES)]
    if _ATTRIBUTES in Base.metadata.tables[table].columns:
        fields.append(pa.field(_ATTRIBUTES, pa.string()))
    return pa.schema(fields)


@cache
def _select_list(table: str) -> str:
    """The SELECT items reading ``_schema(table)``: JSON is read as its text (psycopg would
    hand back Python objects)."""
    return ", ".join(
        f"CAST({name} AS TEXT) AS {name}" if name == _ATTRIBUTES else name
        for name in _schema(table).names
    )


def _fetch(conn: Any, table: str, where: str, params: dict[str, Any]) -> pa.Table:
    schema = _schema(table)
    statement = f"SELECT {_select_list(table)} FROM {table} WHERE {where}"
    if conn.dialect.name == "postgresql":
        return _fetch_postgres(conn, statement, params, schema)
    return _from_rows(conn.execute(text(statement), params).fetchall(), schema, postgres=False)


def _from_rows(rows: Sequence[Sequence[Any]], schema: pa.Schema, postgres: bool) -> pa.Table:
    """DB-API rows as a table of ``schema``: PostgreSQL hands back typed values, SQLite ISO
    text for times and 0/1 for booleans."""
    if not rows:
        return schema.empty_table()
    arrays = []
    for values, field_ in zip(zip(*rows, strict=True), schema, strict=True):
        kind = field_.type
        if postgres:
            arrays.append(pa.array(values, type=kind))
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            # SQLite hands back ISO text; Arrow parses it in C++.
            arrays.append(pc.cast(pa.array(values, pa.string()), kind))
        elif pa.types.is_boolean(kind):
            arrays.append(pc.cast(pa.array(values, pa.int64()), kind))
        else:
            arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, schema=schema)


def _fetch_postgres(
    conn: Any, statement: str, params: dict[str, Any], schema: pa.Schema
) -> pa.Table:
    # COPY ... TO STDOUT streams CSV that Arrow parses in C++: far faster than row objects.
    sql = _pyformat(statement)
    driver = conn.connection.driver_connection
    buffer = io.BytesIO()
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)", params) as copy,
    ):
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    options = pacsv.ConvertOptions(
        column_types=schema,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        true_values=["t"],
        false_values=["f"],
    )
    table = pacsv.read_csv(buffer, convert_options=options)
    return table.select(schema.names).cast(schema)
