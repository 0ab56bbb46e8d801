"""Import one CSV or Parquet file into one source table: validate all of it, then write it all.

Nothing is written unless the whole file is valid, and the write is one transaction, so a
database error halfway (a key inserted concurrently, a lost connection) also leaves nothing.
The whole file is read into memory with pyarrow (columnar, close to the file's size); split
files that do not fit.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from roiml.db.bulk import bulk_insert
from roiml.db.engine import is_postgres
from roiml.errors import ImportValidationError
from roiml.ingest.contract import table_contract
from roiml.ingest.keys import find_existing
from roiml.ingest.read import FileFormat, Source, infer_format, read_file
from roiml.ingest.validate import Problem, raise_first, show_value, validate

__all__ = ["import_file"]

# The same rule the settings apply to ROIML_TENANT_ID.
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _file_format(path: Path, file_format: FileFormat | str | None) -> FileFormat:
    if file_format is None:
        return infer_format(path)
    try:
        return FileFormat(str(file_format).lower())
    except ValueError:
        choices = ", ".join(f.value for f in FileFormat)
        raise ImportValidationError(
            f"unknown file format {file_format!r}; use one of: {choices}"
        ) from None


def import_file(
    engine: Engine,
    table_name: str,
    path: Path | str,
    tenant_id: str,
    file_format: FileFormat | str | None = None,
) -> int:
    """Load ``path`` into source table ``table_name`` for ``tenant_id``; return the rows written.

    ``file_format`` is ``"csv"`` or ``"parquet"``; by default it follows the file's suffix.
    The file must match the table's contract (see :mod:`roiml.ingest.contract`); ``tenant_id``
    may be left out of the file, and where present must equal ``tenant_id`` on every row.
    Raises :class:`~roiml.errors.ImportValidationError` naming the first offending line and
    column; in that case, and on any database error, nothing is written.
    """
    contract = table_contract(table_name)
    if not _TENANT.match(tenant_id):
        raise ImportValidationError(
            f"tenant {tenant_id!r} is not valid: use 1-64 letters, digits, '-' or '_'"
        )
    path = Path(path)
    source = Source(path.name, _file_format(path, file_format))
    data = read_file(path, source.file_format)
    rows = validate(data, contract, source, tenant_id)
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        with engine.begin() as conn:
            if is_postgres(engine):
                # Row-level security checks every inserted row against this setting.
                conn.execute(
                    text("SELECT set_config('app.tenant_id', :tenant, true)"), {"tenant": tenant_id}
                )
            existing = find_existing(conn, contract, rows, tenant_id)
            if existing is not None:
                key_columns = contract.key_columns
                key = ", ".join(
                    f"{name}={show_value(data.column(name), existing.row)}" for name in key_columns
                )
                message = f"{key} already exists in {contract.name} for tenant {tenant_id!r}"
                problem = Problem(existing.row, 0, ", ".join(key_columns), message, existing.count)
                raise_first([problem], source)
            return bulk_insert(conn, contract.table, rows)
    except (DBAPIError, dbapi_error) as exc:
        detail = getattr(exc, "orig", None) or exc
        raise ImportValidationError(
            f"{source.name}: the database refused the rows, nothing was written: {detail}"
        ) from exc
