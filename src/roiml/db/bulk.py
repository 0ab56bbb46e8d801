"""Bulk loading of Arrow tables into SQL tables: COPY on PostgreSQL, one executemany on SQLite.

Used by the world generator and the importer. The caller owns the transaction, so a failure
anywhere leaves nothing written. Memory stays bounded: data goes over in slices.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Column, Connection, Table, insert, select, text

from roiml.db.temporary import create_temporary, plain_type

__all__ = ["bulk_insert"]

_SLICE_ROWS = 200_000


def bulk_insert(conn: Connection, table: Table, data: pa.Table) -> int:
    """Append ``data`` to ``table`` inside the caller's transaction; return the rows written.

    ``data``'s column names must be columns of ``table``; columns it lacks take their *server*
    defaults or NULL (Python-side defaults are not applied: fill them in ``data``).
    """
    unknown = [name for name in data.column_names if name not in table.columns]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    if data.num_rows == 0:
        return 0
    if conn.dialect.name == "postgresql":
        if _row_security_applies(conn, table):
            _insert_through_staging(conn, table, data)
        else:
            _copy_postgres(conn, table, data)
    else:
        _executemany(conn, table, data)
    return data.num_rows


def _row_security_applies(conn: Connection, table: Table) -> bool:
    if table.name.startswith("roiml_"):  # the project's own temporary tables have no policy
        return False
    active: bool | None = conn.execute(
        text("SELECT row_security_active(CAST(:name AS regclass))"), {"name": table.name}
    ).scalar_one()
    return bool(active)


def _insert_through_staging(conn: Connection, table: Table, data: pa.Table) -> None:
    # PostgreSQL refuses COPY into a table whose row-level security applies to the current role
    # (the application role), so rows are copied into a temporary table and moved with one
    # INSERT ... SELECT, which the policy checks; a row of another tenant fails the whole insert.
    names = data.column_names
    staging = create_temporary(
        conn, "roiml_bulk_rows", [Column(name, plain_type(table.c[name].type)) for name in names]
    )
    _copy_postgres(conn, staging, data)
    conn.execute(insert(table).from_select(names, select(*(staging.c[name] for name in names))))
    staging.drop(conn)


def _copy_postgres(conn: Connection, table: Table, data: pa.Table) -> None:
    columns = ", ".join(f'"{name}"' for name in data.column_names)
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN WITH (FORMAT csv)'
    # Arrow's C++ CSV writer quotes every string and leaves nulls bare, which is exactly how
    # COPY tells NULL from an empty string.
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    driver_conn: Any = conn.connection.driver_connection
    with driver_conn.cursor() as cursor, cursor.copy(statement) as copy:
        for offset in range(0, data.num_rows, _SLICE_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(data.slice(offset, _SLICE_ROWS), buffer, write_options=options)
            copy.write(buffer.getbuffer())


def _sqlite_column(column: pa.ChunkedArray) -> list[Any]:
    kind = column.type
    if pa.types.is_timestamp(kind):
        # SQLAlchemy's SQLite DateTime format; Arrow's %S carries the fraction for us units.
        return pc.strftime(column.cast(pa.timestamp("us")), "%Y-%m-%d %H:%M:%S").to_pylist()
    if pa.types.is_date(kind):
        return pc.strftime(column.cast(pa.timestamp("s")), "%Y-%m-%d").to_pylist()
    if pa.types.is_boolean(kind):
        return column.cast(pa.int8()).to_pylist()
    return column.to_pylist()


def _executemany(conn: Connection, table: Table, data: pa.Table) -> None:
    columns = ", ".join(f'"{name}"' for name in data.column_names)
    marks = ", ".join("?" for _ in data.column_names)
    statement = f'INSERT INTO "{table.name}" ({columns}) VALUES ({marks})'
    cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for offset in range(0, data.num_rows, _SLICE_ROWS):
            part = data.slice(offset, _SLICE_ROWS)
            cursor.executemany(
                statement, zip(*(_sqlite_column(c) for c in part.columns), strict=True)
            )
    finally:
        cursor.close()
