"""The feature engine: any set of features for many (entity, as-of) rows, in one DuckDB query.

Batch, backfill and single-entity computation all go through :meth:`FeatureEngine.compute`:
a single entity is a frame of one row, run as the compiler's one-row shape of the same
definitions. There is no second implementation to drift apart.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from roiml.db.base import as_naive_utc
from roiml.errors import FeatureError
from roiml.features.catalog import CATALOG, Catalog
from roiml.features.compiler import CompiledQuery, compile_features
from roiml.features.frame import AS_OF, ENTITY_ID
from roiml.features.sources import SourceTables

__all__ = ["FeatureEngine", "entity_frame"]

_SMALL_FRAME = 1000
# Frames up to this many rows (serving: one) run a plan prepared once per query shape. Its ASOF
# joins are nested loops (see _reuse_connection), which only pay off on a few frame rows.
_REUSE_FRAME = 16
_REUSE_THREADS = 2


class _Source:
    """A source table DuckDB scans through the Arrow PyCapsule interface, asking for the stream
    when a query runs rather than when it is planned: swapping ``table`` feeds a prepared plan
    new rows without touching DuckDB's catalog, which would make it plan the query again."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        # What it holds between requests: no rows, the schema the plan was prepared with.
        self.empty = table.schema.empty_table()

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


@dataclass
class _Reuse:
    """One thread's connection for prepared plans: its sources and its statements by SQL."""

    con: duckdb.DuckDBPyConnection
    sources: dict[str, _Source] = field(default_factory=dict)
    statements: dict[str, str] = field(default_factory=dict)


def entity_frame(entity_ids: Sequence[str], as_of: datetime | Sequence[datetime]) -> pa.Table:
    """An entity frame: every entity at one as-of, or pairwise with a sequence of as-ofs."""
    ids = pa.array(list(entity_ids), pa.string())
    if isinstance(as_of, datetime):
        times = pa.array([as_naive_utc(as_of)] * len(ids), pa.timestamp("us"))
    else:
        times = pa.array([as_naive_utc(t) for t in as_of], pa.timestamp("us"))
        if len(times) != len(ids):
            raise FeatureError(f"{len(ids)} entity ids but {len(times)} as-of timestamps")
    return pa.table({ENTITY_ID: ids, AS_OF: times})


def _one_row_table(result: duckdb.DuckDBPyConnection, features: Sequence[str]) -> pa.Table:
    """The engine's output table from a one-row result, built from Python values: Arrow's
    conversion of DuckDB's result costs ~1.5 ms per call on the full catalog's 94 columns,
    twice what reading the row does. The features go into Arrow as one array, sliced per column
    (each ``pa.array`` call has a fixed cost of its own)."""
    row = result.fetchone()
    if row is None:  # a frame row always yields one row; kept for the type checker
        raise FeatureError("the feature query returned no row for a one-row frame")
    schema = _output_schema(tuple(features))
    values = pa.array(row[2:], pa.float64())
    return pa.Table.from_arrays(
        [
            pa.array([row[0]], pa.string()),
            pa.array([row[1]], pa.timestamp("us")),
            *(values.slice(i, 1) for i in range(len(values))),
        ],
        schema=schema,
    )


@functools.cache
def _output_schema(features: tuple[str, ...]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(ENTITY_ID, pa.string()),
            pa.field(AS_OF, pa.timestamp("us")),
            *(pa.field(name, pa.float64()) for name in features),
        ]
    )


def _check_frame(frame: pa.Table) -> pa.Table:
    missing = [c for c in (ENTITY_ID, AS_OF) if c not in frame.column_names]
    if missing:
        raise FeatureError(
            f"entity frame lacks column(s) {missing}; it needs {ENTITY_ID!r} and {AS_OF!r} "
            f"(has {frame.column_names})"
        )
    kind = frame.schema.field(AS_OF).type
    if not pa.types.is_timestamp(kind):
        raise FeatureError(f"entity frame column {AS_OF!r} must be a timestamp, not {kind}")
    as_of = frame[AS_OF]
    if kind.tz is not None:
        as_of = pc.cast(pc.local_timestamp(as_of), pa.timestamp("us"))
    if as_of.null_count:
        raise FeatureError(f"entity frame column {AS_OF!r} has {as_of.null_count} null(s)")
    entity = frame[ENTITY_ID]
    if entity.null_count:
        raise FeatureError(f"entity frame column {ENTITY_ID!r} has {entity.null_count} null(s)")
    return pa.table(
        {
            "row_id": pa.array(range(frame.num_rows), pa.int64()),
            ENTITY_ID: pc.cast(entity, pa.string()),
            AS_OF: pc.cast(as_of, pa.timestamp("us")),
        }
    )


class FeatureEngine:
    """Compiles feature requests once and runs them over registered source tables."""

    def __init__(self, catalog: Catalog = CATALOG, threads: int | None = None) -> None:
        self.catalog = catalog
        self.threads = threads
        self._local = threading.local()

    def plan(self, features: Sequence[str]) -> CompiledQuery:
        """The compiled query for ``features`` (feature names or feature-set names)."""
        return compile_features(tuple(self.catalog.expand(features)), self.catalog)

    def compute(self, frame: pa.Table, features: Sequence[str], sources: SourceTables) -> pa.Table:
        """Features for every row of ``frame`` (``entity_id``, ``as_of``), in frame order.

        A value as of ``t`` uses only source rows stamped strictly before ``t``.
        Returns ``entity_id``, ``as_of`` and one float64 column per feature.
        """
        plan = self.plan(features)
        missing = sorted(set(plan.tables) - sources.names)
        if missing:
            raise FeatureError(f"source table(s) {missing} are needed but were not loaded")
        rows = _check_frame(frame)
        if rows.num_rows <= _REUSE_FRAME and set(plan.tables) <= set(sources.tables):
            result = self._compute_reused(plan, rows, sources)
            if result is not None:
                return result
        small = rows.num_rows < _SMALL_FRAME
        con = self._small_connection() if small else self._new_connection(self.threads)
        registered: list[str] = []
        try:
            # Only the tables the query reads: registering one costs about a millisecond, which
            # on a one-row frame is as much as the scan it would serve.
            registered = [*sources.register(con, plan.tables), "frame"]
            con.register("frame", rows)
            span = {"lo": pc.min(rows[AS_OF]).as_py(), "hi": pc.max(rows[AS_OF]).as_py()}
            values = {name: span[name] for name in plan.parameters}
            return con.execute(plan.sql, values).to_arrow_table()
        finally:
            if small:
                # The connection is kept for the next small request; the data is not.
                for name in registered:
                    con.unregister(name)
            else:
                con.close()

    def _compute_reused(
        self, plan: CompiledQuery, rows: pa.Table, sources: SourceTables
    ) -> pa.Table | None:
        """Run ``plan`` as a statement prepared once per thread and query shape: planning the
        full catalog's query costs several times what running it on a few rows does.

        Returns None (the caller plans afresh) if DuckDB fails internally; the connection is
        then dropped, since DuckDB may have invalidated it.
        """
        tables = {name: sources.tables[name] for name in plan.tables} | {"frame": rows}
        reuse = self._reuse_connection()
        if any(
            name in reuse.sources and not reuse.sources[name].empty.schema.equals(table.schema)
            for name, table in tables.items()
        ):
            # A prepared plan keeps the stream of the source it was planned with, and DuckDB
            # does not re-plan it when a view of that name is registered again: a table of
            # another schema (hand-made sources) gets a connection of its own.
            self._drop_reuse(reuse)
            reuse = self._reuse_connection()
        try:
            for name, table in tables.items():
                if name in reuse.sources:
                    reuse.sources[name].table = table
                else:
                    reuse.sources[name] = _Source(table)
                    reuse.con.register(name, reuse.sources[name])
            # One row (serving) has a query shape of its own, several times cheaper to run.
            sql = plan.one_row_sql if rows.num_rows == 1 else plan.reusable_sql
            statement = reuse.statements.get(sql)
            if statement is None:
                statement = f"features_{len(reuse.statements)}"
                reuse.con.execute(f"PREPARE {statement} AS {sql}")
                reuse.statements[sql] = statement
            result = reuse.con.execute(f"EXECUTE {statement}")
            if rows.num_rows == 1:
                return _one_row_table(result, plan.features)
            return result.to_arrow_table()
        except (duckdb.InternalException, duckdb.FatalException):
            self._drop_reuse(reuse)
            return None
        finally:
            # The rows are not kept past the request; the (empty) schema is, for the plan.
            for held in reuse.sources.values():
                held.table = held.empty

    def _drop_reuse(self, reuse: _Reuse) -> None:
        reuse.con.close()
        self._local.reuse = None

    def _reuse_connection(self) -> _Reuse:
        reuse: _Reuse | None = getattr(self._local, "reuse", None)
        if reuse is None:
            con = duckdb.connect()
            # Two threads: a one-row plan is ~90 small pipelines, many independent of each
            # other (one per source, join and group), which DuckDB then runs side by side. On
            # 2 cores a single entity's compute: p50 ~33 -> ~28 ms.
            con.execute(f"SET threads = {_REUSE_THREADS}")
            # DuckDB 1.5 crashes re-executing a prepared ASOF join operator (its sort keeps
            # state); rewritten as a nested loop join plus aggregate, which DuckDB does when
            # it estimates fewer input rows than this threshold, it re-executes cleanly and
            # gives the same rows. DuckDB cannot size the Arrow streams, so every ASOF join
            # must fall under it; the frames here have at most _REUSE_FRAME rows, so the
            # loops stay small.
            con.execute("SET asof_loop_join_threshold = 1000000000")
            # A prepared plan is kept across requests whose rows differ, so nothing in it may
            # be derived from one request's data: statistics propagation would prune filters
            # and choose aggregate layouts from the rows seen when it was planned.
            con.execute("SET disabled_optimizers = 'statistics_propagation'")
            reuse = _Reuse(con)
            self._local.reuse = reuse
        return reuse

    @staticmethod
    def _new_connection(threads: int | None) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        # DuckDB rewrites ASOF joins into nested loops when it guesses the inputs are small,
        # and it cannot see the size of registered Arrow tables: that costs 10-20x here.
        con.execute("SET asof_loop_join_threshold = 0")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        return con

    def _small_connection(self) -> duckdb.DuckDBPyConnection:
        # Small frames (serving, single entities) are all planning and no work: one thread, and
        # one connection per thread kept open, since opening a database costs ~10 ms.
        con: duckdb.DuckDBPyConnection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._new_connection(1)
            self._local.con = con
        return con
