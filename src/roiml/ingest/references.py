"""References between a tenant's rows: a transaction's user and property, a property's owner.

Which column names which table is declared once, in ``Column.info["references"]`` of the source
tables, and reaches here through the table's contract. A file's references are checked inside
the import's write transaction, against the tenant's rows in the database: the rows already
there and those written earlier in the same transaction (an import of several files). One
anti-join per reference column answers for the whole file, however large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from sqlalchemy import Column, Connection, Integer, and_, func, select

from roiml.db import Base
from roiml.db.bulk import bulk_insert
from roiml.db.temporary import create_temporary, plain_type
from roiml.ingest.contract import TENANT_COLUMN, TableContract

__all__ = ["DanglingReference", "find_dangling"]

_ROW = "__roiml_row"


@dataclass(frozen=True)
class DanglingReference:
    """The first row whose ``column`` names no row of ``target``, and how many rows do so."""

    column: str
    target: str
    key: str
    row: int
    count: int


def _target_key(target: str) -> str:
    """The column of ``target`` a reference names: its primary key without ``tenant_id``."""
    keys = [c.name for c in Base.metadata.tables[target].primary_key.columns]
    (key,) = [name for name in keys if name != TENANT_COLUMN]
    return key


def find_dangling(
    conn: Connection, contract: TableContract, rows: pa.Table, tenant_id: str
) -> list[DanglingReference]:
    """Each reference column of ``rows`` whose values name rows ``tenant_id`` does not have."""
    found: list[DanglingReference] = []
    if rows.num_rows == 0:
        return found
    for spec in contract.columns.values():
        if spec.references is None or spec.name not in rows.column_names:
            continue
        target_table = Base.metadata.tables[spec.references]
        key = _target_key(spec.references)
        temporary = create_temporary(
            conn,
            "roiml_import_refs",
            [
                Column(_ROW, Integer, nullable=False),
                Column("ref", plain_type(target_table.c[key].type)),
            ],
        )
        values = pa.table(
            {
                _ROW: pa.array(np.arange(rows.num_rows, dtype=np.int64)),
                "ref": rows.column(spec.name),
            }
        )
        bulk_insert(conn, temporary, values)
        match = and_(
            target_table.c[TENANT_COLUMN] == tenant_id,
            target_table.c[key] == temporary.c.ref,
        )
        query = (
            select(func.min(temporary.c[_ROW]).label("first"), func.count().label("matches"))
            .select_from(temporary.outerjoin(target_table, match))
            .where(temporary.c.ref.is_not(None), target_table.c[key].is_(None))
        )
        result = conn.execute(query).one()
        temporary.drop(conn)
        if result.matches:
            first, matches = int(result.first), int(result.matches)
            found.append(DanglingReference(spec.name, spec.references, key, first, matches))
    return found
