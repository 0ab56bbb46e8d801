"""What a file must look like to be imported into a source table, derived from its SQLAlchemy Table.

The source tables' schema is the published input contract, so the importer never keeps its own
copy of it: every column's kind, Arrow type, length, enum values and whether it is required are
read from ``Base.metadata``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    SmallInteger,
    String,
    Table,
)
from sqlalchemy import Enum as SAEnum

from roiml.db import SOURCE_TABLES, Base
from roiml.errors import ImportValidationError

__all__ = [
    "ATTRIBUTES_COLUMN",
    "ColumnContract",
    "Kind",
    "Precision",
    "TableContract",
    "table_contract",
]

TENANT_COLUMN = "tenant_id"
# Holds the tenant's declared columns (roiml.ingest.extensions); never a column of a file.
ATTRIBUTES_COLUMN = "attributes"


class Kind(StrEnum):
    """How the values of a column are read."""

    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    STRING = "string"
    ENUM = "enum"
    DATETIME = "datetime"
    DATE = "date"


class Precision(StrEnum):
    """How precisely a datetime column's values are known (a tenant's contract may coarsen it).

    ``second``: a full timestamp (a date alone means midnight, as for every datetime column).
    ``day``: the time is unknown; values are dates (YYYY-MM-DD). ``month``: the day is unknown;
    values are months (YYYY-MM). A coarse value is stored as the last microsecond of its day or
    month: the event is certainly over by then, so no point-in-time feature sees it early.
    """

    SECOND = "second"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True)
class ColumnContract:
    """One column a file may (or must) carry, and the limits its values must keep.

    ``minimum`` / ``maximum`` are inclusive, ``greater_than`` exclusive; built-in columns take
    them (and ``references``, the table whose key a value must name) from ``Column.info``.
    ``enum_values`` are the values an enum column, or a declared categorical one, may take.
    """

    name: str
    kind: Kind
    arrow_type: pa.DataType
    nullable: bool
    primary_key: bool
    has_default: bool
    default: Any = None
    max_length: int | None = None
    enum_values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    greater_than: float | None = None
    references: str | None = None
    precision: Precision = Precision.SECOND
    description: str = ""
    declared: bool = False

    @property
    def required(self) -> bool:
        """Whether every row must carry a value: NOT NULL and nothing to fall back on."""
        return not self.nullable and not self.has_default


@dataclass(frozen=True)
class TableContract:
    """The columns a file for ``table`` may carry, in table order, without surrogate keys."""

    table: Table
    columns: dict[str, ColumnContract]
    surrogate_keys: tuple[str, ...]
    natural_key: tuple[str, ...]

    @property
    def name(self) -> str:
        """The table name."""
        return self.table.name

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The natural key without ``tenant_id`` (which is constant within one import)."""
        return tuple(name for name in self.natural_key if name != TENANT_COLUMN)

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the rows handed to the database."""
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns.values()]
        )


def _kind_and_type(column: Column[Any]) -> tuple[Kind, pa.DataType]:
    kind = column.type
    # Enum subclasses String, and DateTime/Date are unrelated classes, so the order matters.
    if isinstance(kind, SAEnum):
        return Kind.ENUM, pa.string()
    if isinstance(kind, Boolean):
        return Kind.BOOLEAN, pa.bool_()
    if isinstance(kind, BigInteger):
        return Kind.INTEGER, pa.int64()
    if isinstance(kind, SmallInteger):
        return Kind.INTEGER, pa.int16()
    if isinstance(kind, Integer):
        return Kind.INTEGER, pa.int32()
    if isinstance(kind, Float):
        return Kind.FLOAT, pa.float64()
    if isinstance(kind, DateTime):
        return Kind.DATETIME, pa.timestamp("us")
    if isinstance(kind, Date):
        return Kind.DATE, pa.date32()
    if isinstance(kind, String):
        return Kind.STRING, pa.string()
    raise TypeError(f"{column.table.name}.{column.name}: no import rule for {kind!r}")


def _column_contract(column: Column[Any]) -> ColumnContract:
    kind, arrow_type = _kind_and_type(column)
    default = column.default
    scalar_default = default is not None and bool(getattr(default, "is_scalar", False))
    return ColumnContract(
        name=column.name,
        kind=kind,
        arrow_type=arrow_type,
        nullable=bool(column.nullable),
        primary_key=column.primary_key,
        # A callable Python default cannot be evaluated for COPY, so only scalars and server
        # defaults make a NOT NULL column optional.
        has_default=scalar_default or column.server_default is not None,
        default=getattr(default, "arg", None) if scalar_default else None,
        max_length=getattr(column.type, "length", None) if kind is Kind.STRING else None,
        enum_values=tuple(column.type.enums) if isinstance(column.type, SAEnum) else (),
        minimum=column.info.get("minimum"),
        maximum=column.info.get("maximum"),
        greater_than=column.info.get("greater_than"),
        references=column.info.get("references"),
        description=column.doc or "",
    )


@cache
def table_contract(table_name: str) -> TableContract:
    """The import contract of source table ``table_name``.

    Raises :class:`ImportValidationError` listing the source tables if the name is not one.
    """
    if table_name not in SOURCE_TABLES:
        raise ImportValidationError(
            f"unknown table {table_name!r}; the source tables are: {', '.join(SOURCE_TABLES)}"
        )
    table = Base.metadata.tables[table_name]
    surrogate = table.autoincrement_column
    surrogate_keys = (surrogate.name,) if surrogate is not None else ()
    columns = {
        column.name: _column_contract(column)
        for column in table.columns
        if column.name not in surrogate_keys and column.name != ATTRIBUTES_COLUMN
    }
    natural_key = () if surrogate_keys else tuple(c.name for c in table.primary_key.columns)
    return TableContract(
        table=table, columns=columns, surrogate_keys=surrogate_keys, natural_key=natural_key
    )
