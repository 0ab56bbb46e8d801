"""Source rows for the engine: loaded from the SQL store (one tenant, a time range, optionally a
few entities) or read from a Parquet extract, and registered as DuckDB views by table name.

This is the only adapter between the engine and the relational store; the engine itself never
touches a database connection.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Engine, text

from roiml.errors import FeatureError
from roiml.ingest.contract import table_contract

__all__ = ["ENTITY_KEYS", "SourceTables", "load_sources", "parquet_sources"]

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
# Agent-level features count other users' rows of the same agent.
_AGENT_WIDE = ("users", "transactions")
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

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Make every table visible to ``con`` under its own name."""
        for name, table in self.tables.items():
            con.register(name, table)
        for name, path in self.parquet.items():
            escaped = path.replace("'", "''")
            # The folders above may look like hive partitions (tenant=, date=); they are not data.
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS "
                f"SELECT * FROM read_parquet('{escaped}', hive_partitioning = false)"
            )


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
    agent-level features, the rows of their agents' other clients).
    """
    few = entity_ids is not None and len(entity_ids) <= _MAX_IN_LIST
    ids: dict[str, Any] = {f"e{i}": v for i, v in enumerate(entity_ids or ())}
    in_ids = ", ".join(f":{name}" for name in ids)
    loaded: dict[str, pa.Table] = {}
    with engine.connect() as conn:
        agents: dict[str, Any] = {}
        if entity_ids is not None:
            where = (
                f"tenant_id = :tenant AND user_id IN ({in_ids})" if few else "tenant_id = :tenant"
            )
            users = _fetch(
                conn, "users", where, {"tenant": tenant_id, **(ids if few else {})}, bulk=not few
            )
            users = users.filter(pc.is_in(users["user_id"], value_set=pa.array(list(entity_ids))))
            owners = sorted({a for a in users["agent_id"].to_pylist() if a is not None})
            agents = {f"a{i}": v for i, v in enumerate(owners)}
        for table, days in lookback_days.items():
            clauses = ["tenant_id = :tenant"]
            params: dict[str, Any] = {"tenant": tenant_id}
            times = TIME_COLUMNS.get(table)
            if times:
                clauses.append(f"{times[0]} < :until")
                params["until"] = as_of_max
                if days is not None:
                    params["since"] = as_of_min - timedelta(days=days)
                    clauses.append("(" + " OR ".join(f"{t} >= :since" for t in times) + ")")
            key = ENTITY_KEYS.get(table)
            agent_wide = table in _AGENT_WIDE and bool(agents)
            if few and key:
                condition = f"{key} IN ({in_ids})"
                params.update(ids)
                if agent_wide:
                    condition += f" OR agent_id IN ({', '.join(f':{a}' for a in agents)})"
                    params.update(agents)
                clauses.append(f"({condition})")
            rows = _fetch(conn, table, " AND ".join(clauses), params, bulk=not few)
            if entity_ids is not None and key and not few:
                keep = pc.is_in(rows[key], value_set=pa.array(list(entity_ids)))
                if agent_wide:
                    in_agents = pc.is_in(
                        rows["agent_id"], value_set=pa.array(list(agents.values()))
                    )
                    keep = pc.or_kleene(keep, in_agents)
                rows = rows.filter(keep)
            loaded[table] = rows
    return SourceTables(tables=loaded)


def _fetch(
    conn: Any, table: str, where: str, params: dict[str, Any], bulk: bool = True
) -> pa.Table:
    schema = table_contract(table).arrow_schema()
    schema = pa.schema([f for f in schema if f.name != "tenant_id"])
    columns = ", ".join(schema.names)
    statement = f"SELECT {columns} FROM {table} WHERE {where}"
    postgres = conn.dialect.name == "postgresql"
    if postgres and bulk:
        return _fetch_postgres(conn, statement, params, schema)
    # A few rows: a plain query beats COPY's set-up; PostgreSQL hands back typed values,
    # SQLite ISO text for times and 0/1 for booleans.
    result = conn.execute(text(statement), params)
    rows = result.fetchall()
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
    sql = re.sub(r":(\w+)", r"%(\1)s", statement)
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
