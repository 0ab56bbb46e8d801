"""Reading CSV and Parquet files into Arrow, and naming rows the way a user finds them again.

Both readers load the whole file into memory with pyarrow: that is columnar and compact (a few
bytes over the file size per value), and validating before writing needs every row at hand
anyway. Files far larger than memory should be split before importing.
"""

from __future__ import annotations

import contextlib
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from roiml.errors import ImportValidationError
from roiml.ingest.options import FileFormat  # re-exported: defined there for the CLI's help

__all__ = ["FileFormat", "Source", "infer_format", "read_file"]


_SUFFIXES = {
    ".csv": FileFormat.CSV,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
}
# pyarrow decompresses these transparently, so users.csv.gz is a CSV file.
_COMPRESSED = {".gz", ".bz2", ".zst", ".lz4"}


@dataclass(frozen=True)
class Source:
    """A file being imported: its display name and how its rows are numbered."""

    name: str
    file_format: FileFormat

    def number(self, row: int) -> int:
        """The 1-based number of 0-based data row ``row``: its CSV line (header is 1), or row."""
        return row + 2 if self.file_format is FileFormat.CSV else row + 1

    def ref(self, row: int) -> str:
        """Where data row ``row`` is, e.g. ``line 7`` (CSV) or ``row 6`` (Parquet)."""
        unit = "line" if self.file_format is FileFormat.CSV else "row"
        return f"{unit} {self.number(row)}"

    def where(self, row: int) -> str:
        """The file and the row, e.g. ``users.csv line 7``."""
        return f"{self.name} {self.ref(row)}"


def infer_format(path: Path) -> FileFormat:
    """The format named by ``path``'s suffix: ``.csv`` (maybe compressed), ``.parquet``, ``.pq``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise ImportValidationError(
        f"cannot tell the format of {path.name} from its suffix; "
        "name it .csv, .parquet or .pq, or pass --format csv|parquet"
    )


def read_file(path: Path, file_format: FileFormat) -> pa.Table:
    """The whole file as an Arrow table; CSV columns are all strings, null where cells are empty."""
    if not path.is_file():
        raise ImportValidationError(f"{path} does not exist or is not a file")
    if file_format is FileFormat.CSV:
        return _read_csv(path)
    return _read_parquet(path)


def _read_header(path: Path) -> list[str]:
    with pa.input_stream(str(path), compression="detect") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            return next(csv.reader(text))
        except StopIteration:
            raise ImportValidationError(f"{path.name} is empty: expected a header line") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ImportValidationError(f"{path.name} line 1: unreadable header: {exc}") from exc


def _read_csv(path: Path) -> pa.Table:
    header = _read_header(path)
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ImportValidationError(
            f"{path.name} line 1: column(s) {', '.join(duplicated)} appear more than once",
            line=1,
            column=duplicated[0],
        )
    # Every column as text: conversion happens in validation, where a bad value can be named.
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()),
        strings_can_be_null=True,
        null_values=[""],
    )
    try:
        return pacsv.read_csv(str(path), convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _csv_parse_error(path, convert, exc) from exc


def _csv_parse_error(
    path: Path, convert: pacsv.ConvertOptions, exc: pa.ArrowInvalid
) -> ImportValidationError:
    # Only the single-threaded reader knows line numbers; pay for it on the error path alone.
    bad: list[pacsv.InvalidRow] = []

    def first_bad(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid):
        pacsv.read_csv(
            str(path),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=first_bad),
            convert_options=convert,
        )
    if not bad:
        return ImportValidationError(f"{path.name}: not a readable CSV file: {exc}")
    row = bad[0]
    where = f"{path.name} line {row.number}" if row.number is not None else path.name
    return ImportValidationError(
        f"{where}: expected {row.expected_columns} values, found {row.actual_columns}: "
        f"{row.text!r}",
        line=row.number,
    )


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ImportValidationError(f"{path.name}: not a readable Parquet file: {exc}") from exc
    duplicated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if duplicated:
        raise ImportValidationError(
            f"{path.name}: column(s) {', '.join(duplicated)} appear more than once",
            column=duplicated[0],
        )
    return table
