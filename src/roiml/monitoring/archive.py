"""Prediction-log retention: predictions older than a cut-off move from ``ml_predictions`` to
Parquet, so the table and its indexes stop growing with every request served.

Layout: ``<data_dir>/predictions/archive/tenant=<t>/model=<name>/date=<day>/part-*.parquet``, one
file per chunk moved, every column of ``ml_predictions`` (the JSON columns as JSON text, as
stored). Per chunk, in one transaction: the rows are deleted and returned by one statement (a
feedback write to one of them waits, and the version archived is the one after it), those the
day's files lack are written (atomically: a hidden file, then a rename), and only then does the
transaction commit. A failed write rolls the delete back; a crash between the rename and the
commit leaves rows in both places, and running again writes none of them twice and deletes them.
Nothing is lost.

Monitoring scores a day from the rows in ``ml_predictions``, and move and transaction-type
outcomes only exist once a prediction's horizon has passed: the cut-off is never younger than the
longest horizon of the shipped model configs, and monitoring refuses an archived day rather than
scoring it as a day without predictions.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import DateTime, Engine, Float, String, Table, cast, func, select

from roiml.db.base import as_naive_utc
from roiml.db.engine import tenant_session
from roiml.db.ml_tables import MLPrediction
from roiml.errors import ConfigurationError
from roiml.models.artifact import MODEL_NAMES
from roiml.models.config import load_config
from roiml.store.cold import check_name, fsync_dir, write_hidden

__all__ = [
    "DEFAULT_KEEP_DAYS",
    "ArchiveResult",
    "archive_dir",
    "archive_predictions",
    "archived_models",
    "longest_horizon_days",
    "read_archive",
]

DEFAULT_KEEP_DAYS = 400
_CHUNK_ROWS = 5_000
_TABLE: Table = MLPrediction.__table__  # type: ignore[assignment]
_JSON_COLUMNS = ("features", "probabilities", "shap_values")
_ENUM_COLUMNS = ("prediction_type", "entity_type")


@dataclass(frozen=True)
class ArchiveResult:
    """What :func:`archive_predictions` did (or, on a dry run, would do)."""

    cutoff: datetime
    archived: int  # rows written to Parquet
    deleted: int  # rows deleted from ml_predictions
    partitions: int  # (model, day) folders touched
    dry_run: bool = False


@cache
def longest_horizon_days() -> int:
    """The longest prediction horizon of the shipped model configs, in days."""
    return max(load_config(name).horizon_days for name in MODEL_NAMES.values())


def archive_dir(data_dir: Path, tenant: str) -> Path:
    """The folder holding ``tenant``'s archived predictions."""
    return data_dir / "predictions" / "archive" / f"tenant={check_name(tenant, 'tenant')}"


def _day_dir(data_dir: Path, tenant: str, model: str, day: date) -> Path:
    model_dir = f"model={check_name(model, 'model name')}"
    return archive_dir(data_dir, tenant) / model_dir / f"date={day.isoformat()}"


def archived_models(data_dir: Path, tenant: str, day: date) -> list[str]:
    """The models whose predictions of ``day`` have (partly) been archived."""
    root = archive_dir(data_dir, tenant)
    if not root.is_dir():
        return []
    suffix = f"date={day.isoformat()}"
    return sorted(
        folder.name.removeprefix("model=")
        for folder in root.iterdir()
        if (folder / suffix).is_dir() and any((folder / suffix).glob("part-*.parquet"))
    )


def archive_predictions(
    engine: Engine,
    tenant: str,
    *,
    data_dir: Path,
    keep_days: int = DEFAULT_KEEP_DAYS,
    now: datetime | None = None,
    dry_run: bool = False,
) -> ArchiveResult:
    """Move ``tenant``'s predictions made before ``now - keep_days`` to the Parquet archive.

    ``keep_days`` below :func:`longest_horizon_days` is refused: those predictions may still
    get their outcome. With ``dry_run`` nothing is written or deleted; the counts say what
    would be.
    """
    floor = longest_horizon_days()
    if keep_days < floor:
        raise ConfigurationError(
            f"--keep-days {keep_days} is shorter than the longest prediction horizon ({floor} "
            "days): predictions that young may still get their outcome and be scored; "
            f"use --keep-days {floor} or more"
        )
    # Whole days move: a day is either all in ml_predictions or all in the archive.
    cutoff = datetime.combine((as_naive_utc(now) - timedelta(days=keep_days)).date(), time.min)
    day = func.date(_TABLE.c.predicted_at)
    with tenant_session(engine, tenant) as session:
        counts = session.execute(
            select(_TABLE.c.model_name, day, func.count())
            .where(_TABLE.c.tenant_id == tenant, _TABLE.c.predicted_at < cutoff)
            .group_by(_TABLE.c.model_name, day)
        ).all()
    partitions = sorted(
        (str(model), _as_date(value), typing.cast(int, n)) for model, value, n in counts
    )
    if dry_run:
        total = sum(n for _, _, n in partitions)
        return ArchiveResult(cutoff, total, total, len(partitions), dry_run=True)
    archived = deleted = 0
    for model, on, _ in partitions:
        start = datetime.combine(on, time.min)
        end = start + timedelta(days=1)
        folder = _day_dir(data_dir, tenant, model, on)
        stored = _archived_ids(folder)
        for written, removed in _move_day(engine, tenant, model, start, end, folder, stored):
            archived += written
            deleted += removed
    return ArchiveResult(cutoff, archived, deleted, len(partitions))


def _move_day(
    engine: Engine,
    tenant: str,
    model: str,
    start: datetime,
    end: datetime,
    folder: Path,
    stored: pa.Array,
) -> Iterator[tuple[int, int]]:
    """Move one model's predictions of ``[start, end)`` a chunk at a time; per chunk, yield the
    rows written and deleted. Each chunk is its own transaction."""
    selected = (
        (_TABLE.c.tenant_id == tenant)
        & (_TABLE.c.model_name == model)
        & (_TABLE.c.predicted_at >= start)
        & (_TABLE.c.predicted_at < end)
    )
    # The chunk is deleted and handed back in one statement; the transaction commits only once
    # its rows are in a file, so a failed write deletes nothing.
    chunk = select(_TABLE.c.prediction_id).where(selected).order_by(_TABLE.c.prediction_id)
    statement = (
        _TABLE.delete()
        .where(_TABLE.c.prediction_id.in_(chunk.limit(_CHUNK_ROWS)))
        .returning(*_archive_columns())
    )
    while True:
        with tenant_session(engine, tenant) as session:
            rows = session.execute(statement).all()
            if not rows:
                return
            table = _to_arrow(rows)
            fresh = table.filter(pc.invert(pc.is_in(table["prediction_id"], value_set=stored)))
            if fresh.num_rows:
                _write_part(folder, fresh)
                stored = pa.concat_arrays([stored, fresh["prediction_id"].combine_chunks()])
        yield fresh.num_rows, table.num_rows


def _archive_columns() -> list[Any]:
    # JSON and enum columns as the text stored: the archive keeps what the table held.
    return [
        cast(column, String).label(column.name)
        if column.name in _JSON_COLUMNS or column.name in _ENUM_COLUMNS
        else column
        for column in _TABLE.columns
    ]


@cache
def _schema() -> pa.Schema:
    # From the table's own column types: times, floats, and text (JSON and enums arrive as text).
    def kind(column: Any) -> pa.DataType:
        if isinstance(column.type, DateTime):
            return pa.timestamp("us")
        if isinstance(column.type, Float):
            return pa.float64()
        return pa.string()

    return pa.schema([pa.field(column.name, kind(column)) for column in _TABLE.columns])


def _to_arrow(rows: Sequence[Sequence[Any]]) -> pa.Table:
    schema = _schema()
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _archived_ids(folder: Path) -> pa.Array:
    """The prediction ids already in ``folder``'s files."""
    parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not parts:
        return pa.array([], pa.string())
    ids = [pq.read_table(part, columns=["prediction_id"])["prediction_id"] for part in parts]
    return pa.chunked_array(ids, pa.string()).combine_chunks()


def _write_part(folder: Path, table: pa.Table) -> None:
    name = f"part-{uuid.uuid4().hex}.parquet"
    write_hidden(folder, table, name).replace(folder / name)
    fsync_dir(folder)


def read_archive(
    data_dir: Path, tenant: str, model: str | None = None, day: date | None = None
) -> pa.Table:
    """Archived predictions of ``tenant`` (optionally one model, one day), ordered by time."""
    root = archive_dir(data_dir, tenant)
    pattern = f"model={model or '*'}/date={day.isoformat() if day else '*'}/part-*.parquet"
    parts = sorted(root.glob(pattern)) if root.is_dir() else []
    if not parts:
        return _schema().empty_table()
    table = pa.concat_tables([pq.read_table(p, schema=_schema()) for p in parts])
    return table.sort_by([("predicted_at", "ascending"), ("prediction_id", "ascending")])


def _as_date(value: object) -> date:
    # func.date gives a date on PostgreSQL and ISO text on SQLite.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
