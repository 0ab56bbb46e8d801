"""The feature engine: any set of features for many (entity, as-of) rows, in one DuckDB query.

Batch, backfill and single-entity computation all go through :meth:`FeatureEngine.compute`:
a single entity is a frame of one row. There is no second implementation to drift apart.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
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
