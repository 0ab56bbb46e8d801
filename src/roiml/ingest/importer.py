"""Import one CSV or Parquet file into one source table: validate all of it, then write it all.

Nothing is written unless the whole file is valid, and the write is one transaction, so a
database error halfway (a key inserted concurrently, a lost connection) also leaves nothing.
The whole file is read into memory with pyarrow (columnar, close to the file's size); split
files that do not fit. Inside the transaction, before writing, the file's keys are checked
against the rows stored (no duplicates) and its references against the tenant's rows (a
transaction's user and property, a property's owner must exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from roiml.db.bulk import bulk_insert
from roiml.db.engine import is_postgres
from roiml.errors import ImportValidationError
from roiml.ingest.contract import TableContract, table_contract
from roiml.ingest.declarations import TenantContract
from roiml.ingest.keys import find_existing
from roiml.ingest.read import FileFormat, Source, infer_format, read_file
from roiml.ingest.references import find_dangling
from roiml.ingest.validate import Problem, file_columns, raise_first, show_value, validate

__all__ = ["import_file", "import_files"]

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
    *,
    extensions: TenantContract | None = None,
) -> int:
    """Load ``path`` into source table ``table_name`` for ``tenant_id``; return the rows written.

    ``file_format`` is ``"csv"`` or ``"parquet"``; by default it follows the file's suffix.
    The file must match the table's contract (see :mod:`roiml.ingest.contract`) extended by the
    tenant's own (``extensions``, see :func:`roiml.ingest.extensions.load_tenant_contract`);
    ``tenant_id`` may be left out of the file, and where present must equal ``tenant_id`` on
    every row. References (a transaction's ``user_id`` and ``property_id``, a property's
    ``owner_user_id``) must name rows the tenant already has.
    Raises :class:`~roiml.errors.ImportValidationError` naming the first offending line and
    column; in that case, and on any database error, nothing is written.
    """
    (written,) = import_files(
        engine, [(table_name, path)], tenant_id, file_format, extensions=extensions
    )
    return written


def import_files(
    engine: Engine,
    files: Sequence[tuple[str, Path | str]],
    tenant_id: str,
    file_format: FileFormat | str | None = None,
    *,
    extensions: TenantContract | None = None,
) -> list[int]:
    """Load several ``(table, path)`` files as one import: all of them, or nothing.

    Every file is validated before anything is written; then they are written in one
    transaction, referenced tables first (users, then properties, then transactions), so a
    reference may name a row of an earlier file of the same import. Returns the rows written per
    file, in the order given. Errors as :func:`import_file`.
    """
    if not _TENANT.match(tenant_id):
        raise ImportValidationError(
            f"tenant {tenant_id!r} is not valid: use 1-64 letters, digits, '-' or '_'"
        )
    loaded: list[_Loaded] = []
    for table_name, path in files:
        contract = table_contract(table_name)
        path = Path(path)
        read_from = Source(path.name, _file_format(path, file_format))
        data = read_file(path, read_from.file_format)
        rows = validate(data, contract, read_from, tenant_id, extensions)
        loaded.append(_Loaded(contract, read_from, data, rows))
    order = sorted(range(len(loaded)), key=lambda i: _depth(loaded[i].contract.name))
    written = [0] * len(loaded)
    dbapi_error = engine.dialect.loaded_dbapi.Error
    # The file being written when the database refuses, named in the error.
    source: Source | None = loaded[0].source if loaded else None
    try:
        with engine.begin() as conn:
            if is_postgres(engine):
                # Row-level security checks every inserted row against this setting.
                conn.execute(
                    text("SELECT set_config('app.tenant_id', :tenant, true)"), {"tenant": tenant_id}
                )
            for i in order:
                item = loaded[i]
                source = item.source
                _check_keys(conn, item, tenant_id)
                _check_references(conn, item, tenant_id, extensions)
                written[i] = bulk_insert(conn, item.contract.table, item.rows)
    except (DBAPIError, dbapi_error) as exc:
        detail = getattr(exc, "orig", None) or exc
        name = source.name if source is not None else "the import"
        raise ImportValidationError(
            f"{name}: the database refused the rows, nothing was written: {detail}"
        ) from exc
    return written


@dataclass(frozen=True)
class _Loaded:
    """One file of an import, validated: its table, where it came from, as read, as written."""

    contract: TableContract
    source: Source
    data: pa.Table
    rows: pa.Table


def _depth(table_name: str) -> int:
    """How many references deep ``table_name`` is: users 0, properties 1, transactions 2."""
    targets = [s.references for s in table_contract(table_name).columns.values() if s.references]
    return 1 + max((_depth(t) for t in targets if t != table_name), default=-1)


def _check_keys(conn: Connection, item: _Loaded, tenant_id: str) -> None:
    """Raise naming the first row whose key the tenant already has in the table."""
    contract = item.contract
    existing = find_existing(conn, contract, item.rows, tenant_id)
    if existing is None:
        return
    key_columns = contract.key_columns
    key = ", ".join(
        f"{name}={show_value(item.data.column(name), existing.row)}" for name in key_columns
    )
    message = f"{key} already exists in {contract.name} for tenant {tenant_id!r}"
    problem = Problem(existing.row, 0, ", ".join(key_columns), message, existing.count)
    raise_first([problem], item.source)


def _check_references(
    conn: Connection, item: _Loaded, tenant_id: str, extensions: TenantContract | None
) -> None:
    """Raise naming the first row whose reference names no row of the tenant; else nothing."""
    positions = list(file_columns(item.contract, extensions))
    problems = []
    for dangling in find_dangling(conn, item.contract, item.rows, tenant_id):
        value = show_value(item.data.column(dangling.column), dangling.row)
        message = (
            f"{value} names no row of {dangling.target} for tenant {tenant_id!r} "
            f"({dangling.target}.{dangling.key}), neither stored nor earlier in this import; "
            f"import {dangling.target} first"
        )
        position = positions.index(dangling.column)
        problems.append(Problem(dangling.row, position, dangling.column, message, dangling.count))
    raise_first(problems, item.source)
