"""Cold tier: every day ever computed, as Parquet, one file per (tenant, feature set, date).

Layout (hive-style, so DuckDB, Spark or ``pyarrow.dataset`` read it without roiml)::

    <data_dir>/features/cold/tenant=<t>/feature_set=<name>/date=<YYYY-MM-DD>/part-0.parquet

A date's file is replaced atomically: written to a hidden temporary file in the same folder,
fsynced, then renamed over the old one, so a reader sees the old day or the new day, never half
of one, and writing a day twice leaves one copy. The folder names carry the partition values;
the files hold only ``entity_id``, ``as_of`` and the features, so :func:`read` returns frames
exactly as the feature-frame contract defines them.

This module also holds :func:`check_day`, the validation every tier's ``write_day`` runs first.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from roiml.db.base import utcnow
from roiml.db.enums import EntityType
from roiml.errors import FeatureError
from roiml.features.frame import (
    AS_OF,
    ENTITY_ID,
    FEATURE_TYPE,
    check_feature_frame,
    feature_columns,
)

__all__ = [
    "CREATED_AT",
    "PART_FILE",
    "FeatureDay",
    "StagedDay",
    "add_missing_rows",
    "check_day",
    "check_entity_type",
    "check_name",
    "discard",
    "fsync_dir",
    "list_dates",
    "partition_dir",
    "publish",
    "read",
    "stage_day",
    "tenant_dir",
    "write_day",
    "write_hidden",
]

PART_FILE = "part-0.parquet"
CREATED_AT = "created_at"
CREATED_AT_KEY = b"roiml.created_at"
_MAX_ENTITY_ID = 64  # ml_feature_values.entity_id is VARCHAR(64)
# Tenants and feature-set names become folder names and Redis key segments: no separators,
# no glob characters, nothing a path could climb out with.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EPOCH = datetime(1970, 1, 1)
_ENTITY_TYPES = tuple(member.value for member in EntityType)


@dataclass(frozen=True)
class FeatureDay:
    """A validated day: ``frame`` is ``entity_id``, ``as_of``, then the features in declared
    order, sorted by ``entity_id``, with NaN turned into null (JSON has no NaN)."""

    tenant: str
    feature_set: str
    feature_names: tuple[str, ...]
    as_of: datetime
    frame: pa.Table

    @property
    def date(self) -> date:
        """The partition date of this day."""
        return self.as_of.date()

    @property
    def as_of_us(self) -> int:
        """``as_of`` in microseconds since the Unix epoch (naive UTC)."""
        return (self.as_of - _EPOCH) // timedelta(microseconds=1)


def check_name(value: object, what: str) -> str:
    """``value`` if it is a usable tenant or feature-set name, else :class:`FeatureError`."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise FeatureError(f"{what} {value!r} is not valid: use 1-64 letters, digits, '-' or '_'")
    return value


def check_entity_type(value: object) -> EntityType:
    """``value`` as an :class:`EntityType`, or :class:`FeatureError` listing the valid ones."""
    if isinstance(value, str) and value in _ENTITY_TYPES:
        return EntityType(value)
    allowed = ", ".join(_ENTITY_TYPES)
    raise FeatureError(f"unknown entity type {value!r}; expected one of {allowed}")


def check_day(
    frame: pa.Table, tenant: str, feature_set: str, feature_names: Sequence[str]
) -> FeatureDay:
    """Validate one day's feature frame for ``feature_set`` and return it in canonical form.

    Raises :class:`FeatureError` naming the fault: a broken frame contract, no rows, null or
    duplicate entity ids, more than one ``as_of``, infinite values, or ``feature_names`` that
    are not exactly the frame's feature columns.
    """
    if not isinstance(frame, pa.Table):
        raise FeatureError(f"a feature day must be a pyarrow Table, not {type(frame).__name__}")
    check_name(tenant, "tenant")
    check_name(feature_set, "feature set")
    check_feature_frame(frame)
    names = _check_feature_names(frame, feature_set, feature_names)
    if frame.num_rows == 0:
        raise FeatureError(f"feature day for {feature_set!r} has no rows, so no as_of to file it")
    entity_ids = frame.column(ENTITY_ID)
    if entity_ids.null_count:
        raise FeatureError(f"feature day for {feature_set!r} has {entity_ids.null_count} null ids")
    too_long = pc.max(pc.utf8_length(entity_ids)).as_py()
    if too_long > _MAX_ENTITY_ID:
        raise FeatureError(f"an entity_id is {too_long} characters; the limit is {_MAX_ENTITY_ID}")
    if pc.count_distinct(entity_ids).as_py() != frame.num_rows:
        counts = pc.value_counts(entity_ids).flatten()
        repeated = pc.filter(counts[0], pc.greater(counts[1], 1))
        raise FeatureError(
            f"feature day for {feature_set!r} repeats entity ids, e.g. {repeated[0].as_py()!r}"
        )
    as_of = _single_as_of(frame.column(AS_OF), feature_set)
    columns = [entity_ids, frame.column(AS_OF)]
    for name in names:
        column = frame.column(name)
        if pc.any(pc.is_inf(column)).as_py():
            raise FeatureError(f"feature {name!r} of {feature_set!r} has infinite values")
        # NaN and null both mean "no value"; one spelling keeps cold, warm and hot identical.
        columns.append(pc.if_else(pc.is_nan(column), pa.scalar(None, FEATURE_TYPE), column))
    canonical = pa.table(columns, names=[ENTITY_ID, AS_OF, *names]).sort_by(ENTITY_ID)
    return FeatureDay(tenant, feature_set, names, as_of, canonical.combine_chunks())


def _check_feature_names(
    frame: pa.Table, feature_set: str, feature_names: Sequence[str]
) -> tuple[str, ...]:
    names = tuple(feature_names)
    if isinstance(feature_names, str) or not names:
        raise FeatureError(f"feature set {feature_set!r} needs a non-empty list of feature names")
    if len(set(names)) != len(names):
        raise FeatureError(f"feature set {feature_set!r} lists a feature name twice: {names}")
    present = feature_columns(frame)
    missing = [name for name in names if name not in present]
    extra = [name for name in present if name not in names]
    if missing or extra:
        raise FeatureError(
            f"feature names of {feature_set!r} do not match the frame: "
            f"missing from the frame {missing}, not in the feature set {extra}"
        )
    return names


def _single_as_of(column: pa.ChunkedArray, feature_set: str) -> datetime:
    if column.null_count:
        raise FeatureError(f"feature day for {feature_set!r} has {column.null_count} null as_of")
    bounds = pc.min_max(column)
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    if first != last:
        raise FeatureError(
            f"a feature day has one as_of; {feature_set!r} mixes {first} .. {last}: "
            "write each as_of as its own day"
        )
    as_of: datetime = first
    return as_of


# --------------------------------------------------------------------------- layout


def partition_dir(data_dir: Path, tenant: str, feature_set: str, day: date) -> Path:
    """The folder holding ``day`` of ``feature_set`` for ``tenant``."""
    return _set_dir(data_dir, tenant, feature_set) / f"date={day.isoformat()}"


def tenant_dir(data_dir: Path, tenant: str) -> Path:
    """The folder holding every feature set of ``tenant``."""
    return data_dir / "features" / "cold" / f"tenant={check_name(tenant, 'tenant')}"


def _set_dir(data_dir: Path, tenant: str, feature_set: str) -> Path:
    return tenant_dir(data_dir, tenant) / f"feature_set={check_name(feature_set, 'feature set')}"


def list_dates(tenant: str, feature_set: str, *, data_dir: Path) -> list[date]:
    """The dates stored for ``feature_set`` of ``tenant``, ascending."""
    folder = _set_dir(data_dir, tenant, feature_set)
    if not folder.is_dir():
        return []
    dates = []
    for child in folder.iterdir():
        name = child.name
        if name.startswith("date=") and (child / PART_FILE).is_file():
            try:
                dates.append(date.fromisoformat(name.removeprefix("date=")))
            except ValueError:
                continue  # a stray folder is not ours to judge; it is simply not a day
    return sorted(dates)


# --------------------------------------------------------------------------- write


def write_day(
    frame: pa.Table,
    tenant: str,
    feature_set: str,
    feature_names: Sequence[str],
    *,
    data_dir: Path,
    created_at: datetime | None = None,
) -> Path:
    """Store one day, replacing that date's file atomically; return the file's path.

    The file records when its values were created (``created_at``, default now). Writing the
    same values again keeps the file untouched, creation time included, so a rerun changes
    nothing; changed values (a corrected backfill) get a new creation time, which is what keeps
    them out of training rows dated before the correction.
    """
    staged = stage_day(
        frame, tenant, feature_set, feature_names, data_dir=data_dir, created_at=created_at
    )
    return publish(staged)


@dataclass(frozen=True)
class StagedDay:
    """A day written beside its final place, waiting for :func:`publish` (or :func:`discard`).

    ``temporary`` is None when the stored file already holds these values: nothing to publish.
    """

    temporary: Path | None
    target: Path


def stage_day(
    frame: pa.Table,
    tenant: str,
    feature_set: str,
    feature_names: Sequence[str],
    *,
    data_dir: Path,
    created_at: datetime | None = None,
) -> StagedDay:
    """Write one day to a hidden file next to its target; readers do not see it yet.

    Lets a caller stage every feature set of a day, commit the warm tier, and only then make
    the cold files visible, each by one rename.
    """
    day = check_day(frame, tenant, feature_set, feature_names)
    folder = partition_dir(data_dir, tenant, feature_set, day.date)
    target = folder / PART_FILE
    if target.is_file() and pq.ParquetFile(target).read().equals(day.frame.combine_chunks()):
        return StagedDay(None, target)
    moment = created_at or utcnow()
    metadata = {CREATED_AT_KEY: moment.isoformat().encode()}
    return StagedDay(write_hidden(folder, day.frame.replace_schema_metadata(metadata)), target)


def publish(staged: StagedDay) -> Path:
    """Make a staged day visible: one atomic rename, then the folder entries made durable."""
    if staged.temporary is not None:
        staged.temporary.replace(staged.target)  # atomic on POSIX within one filesystem
        fsync_dir(staged.target.parent)
        fsync_dir(staged.target.parent.parent)
    return staged.target


def discard(staged: StagedDay) -> None:
    """Drop a staged day that will not be published."""
    if staged.temporary is not None:
        staged.temporary.unlink(missing_ok=True)


def add_missing_rows(
    rows: pa.Table, tenant: str, feature_set: str, day: date, *, data_dir: Path
) -> int:
    """Add to ``day``'s file the ``rows`` whose (entity_id, as_of) it lacks; return how many.

    Rows already present keep their stored values: cold is the record. The warm tier's prune
    uses this so that nothing it deletes is lost. ``rows`` may mix several as_of of ``day``.
    """
    if rows.num_rows == 0:
        return 0
    check_feature_frame(rows)
    folder = partition_dir(data_dir, tenant, feature_set, day)
    target = folder / PART_FILE
    if target.is_file():
        # Not pq.read_table: it would add the folder names as tenant/feature_set/date columns.
        stored = pq.ParquetFile(target).read()
        # Rows whose (entity_id, as_of) the file lacks: an anti join, no per-row Python.
        keys = [ENTITY_ID, AS_OF]
        rows = rows.join(stored.select(keys), keys=keys, join_type="left anti")
        if rows.num_rows == 0:
            return 0
        # New features (a changed definition) become columns; old rows get null for them.
        merged = pa.concat_tables([stored, rows], promote_options="permissive")
    else:
        merged = rows
    _replace_file(folder, merged.sort_by([(ENTITY_ID, "ascending"), (AS_OF, "ascending")]))
    added: int = rows.num_rows
    return added


def _replace_file(folder: Path, table: pa.Table) -> Path:
    return publish(StagedDay(write_hidden(folder, table), folder / PART_FILE))


def write_hidden(folder: Path, table: pa.Table, name: str = PART_FILE) -> Path:
    """``table`` written and synced to a hidden file in ``folder``, to be renamed to ``name``:
    hidden and not ``*.parquet``, so globbing readers never pick up a half-written file."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    try:
        with temporary.open("wb") as sink:
            pq.write_table(table.combine_chunks(), sink, compression="zstd")
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def fsync_dir(folder: Path) -> None:
    """Make ``folder``'s entries (a rename into it) durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------- read


def read(
    tenant: str,
    feature_set: str,
    start: date | None = None,
    end: date | None = None,
    entity_ids: Iterable[str] | None = None,
    *,
    data_dir: Path,
    with_created: bool = False,
) -> pa.Table:
    """The stored rows of ``feature_set`` whose as_of date is within ``start``..``end``
    (inclusive, either open), optionally only ``entity_ids``, sorted by as_of then entity_id.

    A datetime counts as its date. Days written under an older definition lack newer features:
    those columns are null there. ``with_created`` adds a ``created_at`` column: when each day's
    values were written (what point-in-time retrieval needs to drop values not yet known).
    """
    first = start.date() if isinstance(start, datetime) else start
    last = end.date() if isinstance(end, datetime) else end
    files = [
        str(partition_dir(data_dir, tenant, feature_set, day) / PART_FILE)
        for day in list_dates(tenant, feature_set, data_dir=data_dir)
        if (first is None or day >= first) and (last is None or day <= last)
    ]
    if not files:
        columns = [pa.array([], pa.string()), pa.array([], pa.timestamp("us"))]
        names = [ENTITY_ID, AS_OF]
        if with_created:
            columns.append(pa.array([], pa.timestamp("us")))
            names.append(CREATED_AT)
        return pa.table(columns, names=names)
    schemas = [pq.read_schema(path) for path in files]
    schema = pa.unify_schemas([s.remove_metadata() for s in schemas])
    wanted = None
    if entity_ids is not None:
        wanted = pc.field(ENTITY_ID).isin(pa.array(list(entity_ids), pa.string()))
    if not with_created:
        # Files are listed explicitly, so no partition columns (tenant, feature_set, date) appear.
        table = pads.dataset(files, schema=schema, format="parquet").to_table(filter=wanted)
    else:
        parts = []
        for path, file_schema in zip(files, schemas, strict=True):
            part = pads.dataset(path, schema=schema, format="parquet").to_table(filter=wanted)
            created = _created_at(file_schema, path)
            parts.append(
                part.append_column(
                    CREATED_AT, pa.array([created] * part.num_rows, pa.timestamp("us"))
                )
            )
        table = pa.concat_tables(parts)
    return table.sort_by([(AS_OF, "ascending"), (ENTITY_ID, "ascending")])


def _created_at(schema: pa.Schema, path: str) -> datetime:
    raw = (schema.metadata or {}).get(CREATED_AT_KEY)
    if raw is None:  # written before creation times were recorded: the file's own time
        return datetime.fromtimestamp(Path(path).stat().st_mtime, UTC).replace(tzinfo=None)
    return datetime.fromisoformat(raw.decode())
