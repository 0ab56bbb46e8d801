"""Whole-file validation against a table's contract, vectorised per column.

The header is checked first (missing, unknown and surrogate-key columns), then every column is
converted at once and each rule yields a mask of offending rows. The earliest offending row is
reported with the file, line, column, value and what was expected, plus a count of the rest.
Columns the tenant declared (:mod:`roiml.ingest.extensions`) are validated the same way and
leave as one ``attributes`` JSON column.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from roiml.errors import ImportValidationError
from roiml.ingest.attributes import CONTROL_CHARACTER, attributes_json
from roiml.ingest.contract import (
    ATTRIBUTES_COLUMN,
    TENANT_COLUMN,
    ColumnContract,
    Kind,
    TableContract,
)
from roiml.ingest.declarations import TenantContract
from roiml.ingest.keys import find_duplicates
from roiml.ingest.limits import limit_checks
from roiml.ingest.parse import Check, parse_column
from roiml.ingest.read import Source

__all__ = ["Problem", "file_columns", "raise_first", "show_value", "validate"]


@dataclass(frozen=True)
class Problem:
    """The first cell that breaks one rule, and how many cells break it."""

    row: int
    position: int
    column: str
    message: str
    count: int


def show_value(raw: pa.ChunkedArray, row: int) -> str:
    """One cell as the user wrote it: quoted text for strings, Arrow's rendering otherwise."""
    value = raw[row]
    if pa.types.is_string(value.type) or pa.types.is_large_string(value.type):
        return repr(value.as_py())
    return repr(pc.cast(raw.slice(row, 1), pa.string())[0].as_py())


def raise_first(problems: list[Problem], source: Source) -> None:
    """Raise :class:`ImportValidationError` for the earliest problem, if there is any."""
    if not problems:
        return
    first = min(problems, key=lambda p: (p.row, p.position))
    more = sum(p.count for p in problems) - 1
    note = f"{more} more problem{'s' if more != 1 else ''} in the file; " if more else ""
    raise ImportValidationError(
        f"{source.where(first.row)}, column {first.column}: {first.message} "
        f"({note}nothing was written)",
        line=source.number(first.row),
        column=first.column,
    )


def file_columns(
    contract: TableContract, extensions: TenantContract | None
) -> dict[str, ColumnContract]:
    """Every column a file for ``contract``'s table may carry for this tenant: the built-in ones
    (with the tenant's precision of its datetime columns), then the tenant's declared ones."""
    if extensions is None:
        return dict(contract.columns)
    table = contract.name
    columns = {
        name: replace(spec, precision=extensions.precision(table, name))
        if spec.kind is Kind.DATETIME
        else spec
        for name, spec in contract.columns.items()
    }
    for column in extensions.columns(table):
        columns[column.name] = column.column_contract(extensions.precision(table, column.name))
    return columns


def _check_header(
    names: list[str], contract: TableContract, columns: dict[str, ColumnContract], source: Source
) -> None:
    surrogate = [name for name in names if name in contract.surrogate_keys]
    if surrogate:
        raise ImportValidationError(
            f"{source.name}: column {surrogate[0]}: surrogate keys are assigned by the database; "
            "remove the column from the file",
            column=surrogate[0],
        )
    expected = ", ".join(columns)
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise ImportValidationError(
            f"{source.name}: unknown column(s) {', '.join(unknown)}; "
            f"{contract.name} takes: {expected}; declare a column of your own with "
            f"`roiml data contract add {contract.name} {unknown[0]} --type ...`",
            column=unknown[0],
        )
    missing = [
        spec.name
        for spec in contract.columns.values()
        if spec.required and spec.name != TENANT_COLUMN and spec.name not in names
    ]
    if missing:
        raise ImportValidationError(
            f"{source.name}: missing required column(s) {', '.join(missing)}; "
            f"{contract.name} takes: {expected}",
            column=missing[0],
        )


def _first(mask: pa.Array) -> tuple[int, int] | None:
    """(first true row, number of true rows) of a never-null boolean mask, or None."""
    count = pc.sum(mask).as_py() or 0
    if count == 0:
        return None
    return pc.index(mask, True).as_py(), count


def _constant(value: object, spec: ColumnContract, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, spec.arrow_type), n)


def validate(
    data: pa.Table,
    contract: TableContract,
    source: Source,
    tenant_id: str,
    extensions: TenantContract | None = None,
) -> pa.Table:
    """The rows of ``data`` converted to ``contract``'s Arrow schema, with ``tenant_id`` filled.

    Columns ``extensions`` declares for the table are checked against their declaration and
    returned as one ``attributes`` JSON text column (when the file carries any of them).
    Raises :class:`ImportValidationError` naming the first problem; checks keys within the file
    but not against the database (the importer does that inside its write transaction).
    """
    specs = file_columns(contract, extensions)
    _check_header(data.column_names, contract, specs, source)
    n = data.num_rows
    problems: list[Problem] = []
    columns: dict[str, pa.Array] = {}
    declared: dict[str, tuple[ColumnContract, pa.Array]] = {}
    for position, spec in enumerate(specs.values()):
        if spec.name not in data.column_names:
            if spec.name == TENANT_COLUMN:
                columns[spec.name] = _constant(tenant_id, spec, n)
            elif spec.default is not None:
                columns[spec.name] = _constant(spec.default, spec, n)
            # Nullable columns and server defaults are left to the database.
            continue
        raw = data.column(spec.name)
        parsed = parse_column(raw, spec)
        values = parsed.values
        if spec.default is not None:
            values = pc.if_else(parsed.missing, pa.scalar(spec.default, spec.arrow_type), values)
        elif not spec.nullable:
            found = _first(parsed.missing)
            if found is not None:
                row, count = found
                message = "is empty, but a value is required"
                problems.append(Problem(row, position, spec.name, message, count))
        for check in [*parsed.checks, *limit_checks(values, spec), *_text_checks(values, spec)]:
            found = _first(check.mask)
            if found is not None:
                row, count = found
                message = f"{show_value(raw, row)} {check.reason}"
                problems.append(Problem(row, position, spec.name, message, count))
        if spec.name == TENANT_COLUMN:
            other = pc.fill_null(pc.not_equal(values, tenant_id), False)
            found = _first(other)
            if found is not None:
                row, count = found
                message = (
                    f"{show_value(raw, row)} is not the tenant being imported ({tenant_id!r}); "
                    "a file holds one tenant's rows"
                )
                problems.append(Problem(row, position, spec.name, message, count))
        if spec.declared:
            declared[spec.name] = (spec, values)
        else:
            columns[spec.name] = values
    problems.extend(_duplicate_problems(data, columns, contract, source))
    raise_first(problems, source)
    rows = pa.table({name: columns[name] for name in contract.columns if name in columns})
    if declared:
        rows = rows.append_column(ATTRIBUTES_COLUMN, attributes_json(declared, n))
    return rows


def _text_checks(values: pa.Array, spec: ColumnContract) -> list[Check]:
    """A declared text value must be storable as JSON text (see :mod:`roiml.ingest.attributes`)."""
    if not spec.declared or spec.kind not in (Kind.STRING, Kind.ENUM):
        return []
    control = pc.fill_null(pc.match_substring_regex(values, CONTROL_CHARACTER), False)
    return [Check(control, "holds a control character; remove it")]


def _duplicate_problems(
    data: pa.Table, columns: dict[str, pa.Array], contract: TableContract, source: Source
) -> list[Problem]:
    key_columns = contract.key_columns
    if not key_columns:
        return []
    found = find_duplicates(pa.table({name: columns[name] for name in key_columns}))
    if found is None:
        return []
    key = ", ".join(f"{name}={show_value(data.column(name), found.row)}" for name in key_columns)
    message = f"duplicate primary key ({key}); first on {source.ref(found.first_row)}"
    position = list(contract.columns).index(key_columns[0])
    return [Problem(found.row, position, ", ".join(key_columns), message, found.count)]
