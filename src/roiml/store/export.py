"""Write a frame (a training set, a point-in-time join's output) to Parquet, CSV or JSON lines.

Parquet keeps every type exactly. CSV and JSON write timestamps as ISO-8601 text: naive ones
(naive UTC by the feature-frame contract) as ``2024-01-31T09:30:00.000000``, zoned ones
converted to UTC with a ``Z`` suffix. JSON has no NaN or infinity, so non-finite floats are
written as ``null`` there (CSV keeps ``nan``/``inf``). A file is written next to its target and
renamed over it, so a failed export never leaves half a file behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from roiml.errors import FeatureError

__all__ = ["FORMATS", "export_frame"]

FORMATS = ("parquet", "csv", "json")
_SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}


def export_frame(table: pa.Table, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write ``table`` to ``path`` and return the path written.

    ``format`` is ``"parquet"``, ``"csv"`` or ``"json"`` (JSON lines: one object per row); when
    omitted it follows the suffix (``.parquet``/``.pq``, ``.csv``, ``.json``/``.jsonl``/
    ``.ndjson``). Missing parent folders are created. Raises :class:`FeatureError` for an
    unknown format or suffix, a ``table`` that is not an Arrow table, or a path that cannot be
    written; nothing is written then.
    """
    target = Path(path)
    kind = _format_of(target, format)
    if not isinstance(table, pa.Table):
        raise FeatureError(f"export_frame needs an Arrow table, not {type(table).__name__}")
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _WRITERS[kind](table, partial)
        partial.replace(target)
    except (OSError, duckdb.IOException) as exc:
        raise FeatureError(f"cannot write {kind} file {str(target)!r}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def _format_of(target: Path, format: str | None) -> str:
    if format is not None:
        kind = format.lower().lstrip(".")
        if kind in {"jsonl", "ndjson"}:
            kind = "json"
        if kind not in FORMATS:
            raise FeatureError(f"unknown export format {format!r}; use one of {list(FORMATS)}")
        return kind
    kind_from_suffix = _SUFFIXES.get(target.suffix.lower())
    if kind_from_suffix is None:
        raise FeatureError(
            f"cannot tell the export format of {str(target)!r} from its suffix; "
            f"use one of {sorted(_SUFFIXES)} or pass format= one of {list(FORMATS)}"
        )
    return kind_from_suffix


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


def _write_csv(table: pa.Table, path: Path) -> None:
    pcsv.write_csv(_iso_timestamps(table), path)


def _write_json(table: pa.Table, path: Path) -> None:
    frame = _iso_timestamps(table)
    for index, field in enumerate(frame.schema):
        if pa.types.is_floating(field.type):
            column = frame.column(index)
            frame = frame.set_column(index, field, pc.if_else(pc.is_finite(column), column, None))
    # DuckDB writes newline-delimited JSON in row order, vectorised, with round-trip floats.
    with duckdb.connect() as connection:
        connection.register("frame", frame)
        quoted = str(path).replace("'", "''")
        connection.execute(f"COPY frame TO '{quoted}' (FORMAT JSON)")


def _iso_timestamps(table: pa.Table) -> pa.Table:
    for index, field in enumerate(table.schema):
        kind = field.type
        if not pa.types.is_timestamp(kind):
            continue
        column = table.column(index)
        pattern = "%Y-%m-%dT%H:%M:%S"  # %S carries the unit's fraction digits
        if kind.tz is not None:
            # Arrow holds zoned instants as UTC; without the zone they print as UTC.
            column = column.cast(pa.timestamp(kind.unit))
            pattern += "Z"
        table = table.set_column(
            index, pa.field(field.name, pa.string()), pc.strftime(column, format=pattern)
        )
    return table


_WRITERS: dict[str, Callable[[pa.Table, Path], None]] = {
    "parquet": _write_parquet,
    "csv": _write_csv,
    "json": _write_json,
}
