"""Primary-key checks: duplicates within the file (Arrow) and keys already stored (one SQL join)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Column, Connection, Integer, and_, func, select

from roiml.db.bulk import bulk_insert
from roiml.db.temporary import create_temporary, plain_type
from roiml.ingest.contract import TENANT_COLUMN, TableContract

__all__ = ["DuplicateKeys", "ExistingKeys", "find_duplicates", "find_existing"]

_ROW = "__roiml_row"


@dataclass(frozen=True)
class DuplicateKeys:
    """The earliest repeated key: ``row`` repeats ``first_row``; ``count`` repeats in all."""

    first_row: int
    row: int
    count: int


@dataclass(frozen=True)
class ExistingKeys:
    """The first row whose key is already stored, and how many rows are."""

    row: int
    count: int


def _row_numbers(n: int) -> pa.Array:
    return pa.array(np.arange(n, dtype=np.int64))


def find_duplicates(keys: pa.Table) -> DuplicateKeys | None:
    """The first row of ``keys`` whose values all equal an earlier row's, or None.

    Sorting by key then row puts repeats next to each other, so comparing neighbours finds them
    all at once; rows with a null in the key never match (they are reported as empty anyway).
    """
    n = keys.num_rows
    if n < 2 or keys.num_columns == 0:
        return None
    indexed = keys.append_column(_ROW, _row_numbers(n))
    order = [(name, "ascending") for name in keys.column_names] + [(_ROW, "ascending")]
    ordered = indexed.take(pc.sort_indices(indexed, sort_keys=order))
    same: pa.ChunkedArray | None = None
    for name in keys.column_names:
        column = ordered.column(name)
        equal = pc.equal(column.slice(1), column.slice(0, n - 1))
        same = equal if same is None else pc.and_(same, equal)
    assert same is not None
    same = pc.fill_null(same, False)
    count = pc.sum(same).as_py() or 0
    if count == 0:
        return None
    rows = ordered.column(_ROW)
    later = pc.filter(rows.slice(1), same)
    earlier = pc.filter(rows.slice(0, n - 1), same)
    # Neighbours within a run are in row order, so the smallest later row pairs with the first.
    at = pc.index(later, pc.min(later)).as_py()
    return DuplicateKeys(first_row=earlier[at].as_py(), row=later[at].as_py(), count=count)


def find_existing(
    conn: Connection, contract: TableContract, rows: pa.Table, tenant_id: str
) -> ExistingKeys | None:
    """The first of ``rows`` whose natural key ``tenant_id`` already has in the table, or None.

    The file's keys go into a temporary table and one join answers for all of them, which stays
    fast however many rows the table or the file holds.
    """
    key_columns = contract.key_columns
    if not key_columns or rows.num_rows == 0:
        return None
    target = contract.table
    temporary = create_temporary(
        conn,
        "roiml_import_keys",
        [
            Column(_ROW, Integer, nullable=False),
            *(Column(name, plain_type(target.c[name].type)) for name in key_columns),
        ],
    )
    keys = rows.select(list(key_columns)).append_column(_ROW, _row_numbers(rows.num_rows))
    bulk_insert(conn, temporary, keys)
    match = and_(
        target.c[TENANT_COLUMN] == tenant_id,
        *(target.c[name] == temporary.c[name] for name in key_columns),
    )
    query = select(func.min(temporary.c[_ROW]).label("first"), func.count().label("matches"))
    found = conn.execute(query.select_from(temporary.join(target, match))).one()
    temporary.drop(conn)
    if not found.matches:
        return None
    return ExistingKeys(row=int(found.first), count=int(found.matches))
