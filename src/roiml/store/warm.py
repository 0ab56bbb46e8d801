"""Warm tier: recent feature vectors in ``ml_feature_values``, one row per
(tenant, entity type, entity id, feature set, as_of), values as a JSON object.

Writes are idempotent upserts on that unique key: rows go to a temporary table (COPY on
PostgreSQL, executemany on SQLite, both through :func:`bulk_insert`), then one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` moves them. The update only fires when the values
differ, so rewriting a day leaves its rows untouched, ``created_at`` included.

Every function works as the application role under row-level security: it sets
``app.tenant_id`` for its transaction, as :func:`roiml.db.engine.tenant_session` does, and
refuses a connection already scoped to another tenant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Row,
    Table,
    Text,
    bindparam,
    cast,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from roiml.db.base import as_naive_utc, utcnow
from roiml.db.bulk import bulk_insert
from roiml.db.enums import EntityType
from roiml.db.ml_tables import MLFeatureValue
from roiml.db.temporary import create_temporary, plain_type
from roiml.errors import FeatureError
from roiml.features.frame import AS_OF, ENTITY_ID, FEATURE_TYPE
from roiml.store import cold
from roiml.store.cold import check_day, check_entity_type, check_name

__all__ = ["Database", "PruneResult", "prune", "read_latest", "read_range", "write_day"]

Database = Engine | Connection
FeatureValues = dict[str, float | None]

_TABLE: Table = MLFeatureValue.__table__  # type: ignore[assignment]
_KEY = ("tenant_id", "entity_type", "entity_id", "feature_set", "as_of")
_WRITTEN = (*_KEY, "values", "created_at")
_IN_CHUNK = 5000  # entity ids per IN list: well under every driver's parameter limit
# The JSON as text, for Arrow to parse in bulk: psycopg would otherwise build a dict per row.
_VALUES_TEXT = cast(_TABLE.c["values"], Text).label("values_text")


@contextmanager
def _scoped(db: Database, tenant: str) -> Iterator[Connection]:
    """``db`` as a connection whose transaction is scoped to ``tenant``.

    An engine gets its own transaction, committed on success; a connection is the caller's,
    and nothing is committed here.
    """
    check_name(tenant, "tenant")
    if isinstance(db, Engine):
        with db.begin() as conn:
            _set_tenant(conn, tenant)
            yield conn
    else:
        _set_tenant(db, tenant)
        yield db


def _set_tenant(conn: Connection, tenant: str) -> None:
    if conn.dialect.name != "postgresql":
        return
    current = conn.execute(text("SELECT current_setting('app.tenant_id', true)")).scalar()
    if current and current != tenant:
        # Switching would silently rescope the rest of the caller's transaction.
        raise FeatureError(
            f"the connection is scoped to tenant {current!r}; cannot use it for {tenant!r}"
        )
    if not current:
        # Transaction-local, like tenant_session: a pooled connection forgets it at commit.
        conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tenant})


# --------------------------------------------------------------------------- write


def write_day(
    db: Database,
    frame: pa.Table,
    tenant: str,
    entity_type: EntityType | str,
    feature_set: str,
    feature_names: Sequence[str],
    *,
    created_at: datetime | None = None,
) -> int:
    """Upsert one day of ``feature_set``; return the rows inserted or changed.

    ``db`` is an engine (own transaction) or a connection (the caller's transaction). Writing
    the same day again changes nothing and returns 0.
    """
    day = check_day(frame, tenant, feature_set, feature_names)
    kind = check_entity_type(entity_type)
    rows = day.frame.num_rows
    data = pa.table(
        {
            "tenant_id": pa.array([tenant] * rows, pa.string()),
            "entity_type": pa.array([kind.value] * rows, pa.string()),
            "entity_id": day.frame.column(ENTITY_ID),
            "feature_set": pa.array([feature_set] * rows, pa.string()),
            "as_of": day.frame.column(AS_OF),
            "values": _values_json(day.frame, day.feature_names),
            "created_at": pa.array([created_at or utcnow()] * rows, pa.timestamp("us")),
        }
    )
    with _scoped(db, tenant) as conn:
        return _upsert(conn, data)


def _values_json(frame: pa.Table, names: Sequence[str]) -> pa.ChunkedArray:
    # Built column-wise by Arrow: its float-to-string cast writes the shortest text that reads
    # back to the same double, which is valid JSON for every finite value (check_day refused
    # infinities and turned NaN into null). Python's json module took ~20x longer.
    pieces: list[Any] = []
    for index, name in enumerate(names):
        pieces.append(pa.scalar(("{" if index == 0 else ",") + json.dumps(name) + ":"))
        pieces.append(pc.fill_null(pc.cast(frame.column(name), pa.string()), "null"))
    pieces.append(pa.scalar("}"))
    return pc.binary_join_element_wise(*pieces, "")


def _upsert(conn: Connection, data: pa.Table) -> int:
    staging = create_temporary(
        conn,
        "roiml_warm_rows",
        [Column(name, plain_type(_TABLE.c[name].type)) for name in _WRITTEN],
    )
    bulk_insert(conn, staging, data)
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    # WHERE true: SQLite needs it to parse ON CONFLICT after INSERT ... SELECT.
    source = select(*(staging.c[name] for name in _WRITTEN)).where(true())
    statement = insert(_TABLE).from_select(list(_WRITTEN), source)
    statement = statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={"values": statement.excluded["values"], "created_at": statement.excluded.created_at},
        # Only real changes: a rewritten day leaves its rows (and created_at) as they were.
        where=_TABLE.c["values"].is_distinct_from(statement.excluded["values"]),
    )
    # Without preserve_rowcount, an INSERT's count is lost once its cursor closes (psycopg).
    result = conn.execute(statement.execution_options(preserve_rowcount=True))
    changed: int = result.rowcount
    # Not in a finally: after an error PostgreSQL refuses every statement until rollback, which
    # drops the table anyway; a pooled SQLite connection keeps it, hence this explicit drop.
    staging.drop(conn)
    return changed


# --------------------------------------------------------------------------- read


def read_latest(
    db: Database,
    tenant: str,
    entity_type: EntityType | str,
    entity_id: str,
    feature_sets: Sequence[str],
    max_age: timedelta,
    *,
    now: datetime | None = None,
) -> dict[str, tuple[datetime, FeatureValues]]:
    """Per feature set, the latest ``(as_of, values)`` of ``entity_id`` with
    ``now - max_age <= as_of <= now``; sets with no such row are absent (expired = missing)."""
    moment = as_naive_utc(now)
    kind = check_entity_type(entity_type)
    query = (
        select(_TABLE.c.feature_set, _TABLE.c.as_of, _TABLE.c["values"])
        .where(
            _TABLE.c.tenant_id == tenant,
            _TABLE.c.entity_type == kind,
            _TABLE.c.entity_id == entity_id,
            _TABLE.c.feature_set.in_(list(feature_sets)),
            _TABLE.c.as_of >= moment - max_age,
            _TABLE.c.as_of <= moment,
        )
        .order_by(_TABLE.c.as_of.desc())
    )
    latest: dict[str, tuple[datetime, FeatureValues]] = {}
    with _scoped(db, tenant) as conn:
        for row in conn.execute(query):
            latest.setdefault(row.feature_set, (row.as_of, row.values))
    return latest


def read_range(
    db: Database,
    tenant: str,
    entity_type: EntityType | str,
    feature_set: str,
    feature_names: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    entity_ids: Iterable[str] | None = None,
) -> pa.Table:
    """A feature frame of ``feature_set`` for as_of dates ``start``..``end`` (inclusive, either
    open; a datetime counts as its date), optionally only ``entity_ids``, sorted by as_of then
    entity_id. Columns follow ``feature_names``; by default, the order the stored JSON gives."""
    kind = check_entity_type(entity_type)
    query = select(_TABLE.c.entity_id, _TABLE.c.as_of, _VALUES_TEXT).where(
        _TABLE.c.tenant_id == tenant,
        _TABLE.c.entity_type == kind,
        _TABLE.c.feature_set == feature_set,
    )
    if start is not None:
        query = query.where(_TABLE.c.as_of >= _day_start(start))
    if end is not None:
        query = query.where(_TABLE.c.as_of < _day_start(end) + timedelta(days=1))
    rows: list[Row[Any]] = []
    with _scoped(db, tenant) as conn:
        if entity_ids is None:
            rows.extend(conn.execute(query))
        else:
            wanted = list(dict.fromkeys(entity_ids))
            by_ids = query.where(_TABLE.c.entity_id.in_(bindparam("ids", expanding=True)))
            for offset in range(0, len(wanted), _IN_CHUNK):
                rows.extend(conn.execute(by_ids, {"ids": wanted[offset : offset + _IN_CHUNK]}))
    return _frame(rows, feature_names).sort_by([(AS_OF, "ascending"), (ENTITY_ID, "ascending")])


def _day_start(day: date) -> datetime:
    return datetime.combine(day.date() if isinstance(day, datetime) else day, time())


def _frame(rows: Sequence[Row[Any]], feature_names: Sequence[str] | None) -> pa.Table:
    """A feature frame from (entity_id, as_of, values as JSON text) rows.

    Arrow parses the JSON in one pass. A feature a row lacks (an older definition) is null, as
    in the cold tier; without ``feature_names`` the columns are every key, first seen first.
    """
    keys = [
        pa.array([row.entity_id for row in rows], pa.string()),
        pa.array([row.as_of for row in rows], pa.timestamp("us")),
    ]
    if not rows:
        names = list(feature_names or [])
        features = [pa.array([], FEATURE_TYPE) for _ in names]
        return pa.table([*keys, *features], names=[ENTITY_ID, AS_OF, *names])
    lines = pa.py_buffer("\n".join(row.values_text for row in rows).encode())
    options = None
    if feature_names is not None:
        schema = pa.schema([(name, FEATURE_TYPE) for name in feature_names])
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    parsed = pajson.read_json(pa.BufferReader(lines), parse_options=options)
    # Inferred columns may come back as int64 (JSONB writes 2.0 as 2) or null (never set).
    features = [parsed.column(name).cast(FEATURE_TYPE) for name in parsed.column_names]
    return pa.table([*keys, *features], names=[ENTITY_ID, AS_OF, *parsed.column_names])


# --------------------------------------------------------------------------- prune


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did: rows written to cold first, rows deleted, partitions touched."""

    copied_to_cold: int
    deleted: int
    partitions: int


def prune(
    engine: Engine,
    tenant: str,
    *,
    data_dir: Path,
    keep_days: int = 30,
    now: datetime | None = None,
) -> PruneResult:
    """Move the tenant's rows with ``as_of < now - keep_days`` out of the warm tier.

    Per cold partition (feature set and date), in its own transaction: rows the cold file lacks
    are added to it (atomically), then the rows are deleted. A crash in between leaves rows in
    both tiers, and running again just deletes them. Cold has no entity-type level, so a feature
    set name must belong to one entity type; a partition that mixes several is refused.
    """
    if keep_days < 0:
        raise FeatureError(f"keep_days must be >= 0, not {keep_days}")
    cutoff = as_naive_utc(now) - timedelta(days=keep_days)
    groups = select(_TABLE.c.feature_set, _TABLE.c.entity_type, _TABLE.c.as_of).where(
        _TABLE.c.tenant_id == tenant, _TABLE.c.as_of < cutoff
    )
    partitions: dict[tuple[str, date], set[tuple[str, datetime]]] = {}
    with _scoped(engine, tenant) as conn:
        for row in conn.execute(groups.distinct()):
            partitions.setdefault((row.feature_set, row.as_of.date()), set()).add(
                (row.entity_type, row.as_of)
            )
    copied = deleted = 0
    for (feature_set, day), members in sorted(partitions.items()):
        kinds = {kind for kind, _ in members}
        if len(kinds) > 1:
            raise FeatureError(
                f"feature set {feature_set!r} has rows of entity types {sorted(kinds)} on {day}; "
                "the cold tier keeps one entity type per feature set"
            )
        as_ofs = sorted(as_of for _, as_of in members)
        selected = (_TABLE.c.tenant_id == tenant) & (_TABLE.c.feature_set == feature_set)
        selected &= _TABLE.c.as_of.in_(as_ofs)
        with _scoped(engine, tenant) as conn:
            # FOR UPDATE (PostgreSQL): a concurrent upsert of these rows waits until they are
            # in cold and gone, instead of changing values we are about to delete.
            query = select(_TABLE.c.entity_id, _TABLE.c.as_of, _VALUES_TEXT).where(selected)
            rows = conn.execute(query.with_for_update()).all()
            copied += cold.add_missing_rows(
                _frame(rows, None), tenant, feature_set, day, data_dir=data_dir
            )
            deleted += conn.execute(_TABLE.delete().where(selected)).rowcount
    return PruneResult(copied_to_cold=copied, deleted=deleted, partitions=len(partitions))
