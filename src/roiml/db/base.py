"""Declarative base, shared column types and the tenant mixin every table uses."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String, func
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base",
    "BigIntPK",
    "JSONType",
    "TenantMixin",
    "as_naive_utc",
    "enum_column",
    "utcnow",
]

# Deterministic constraint names, so Alembic migrations read the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants 64 bits for event tables.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL (indexable, compact), plain JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Naive UTC now: every timestamp in the schema is naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_naive_utc(moment: datetime | None) -> datetime:
    """``moment`` as naive UTC (an aware datetime is converted); None means now.

    The schema's timestamps are naive UTC; an aware datetime would not compare with them.
    """
    if moment is None:
        return utcnow()
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def enum_column(enum_cls: type[StrEnum], **kwargs: Any) -> Mapped[Any]:
    """A VARCHAR + CHECK enum column: portable, and no ALTER TYPE dance when values are added."""
    return mapped_column(
        SAEnum(
            enum_cls,
            native_enum=False,
            create_constraint=True,
            length=32,
            validate_strings=True,
            name=f"{enum_cls.__name__.lower()}_values",
            values_callable=lambda members: [m.value for m in members],
        ),
        **kwargs,
    )


class Base(DeclarativeBase):
    """Declarative base with the project's naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantMixin:
    """Every row carries its tenant; PostgreSQL row-level security keys on this column."""

    tenant_id: Mapped[str] = mapped_column(String(64), nullable=False)


class CreatedAtMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(), nullable=False, default=utcnow, server_default=func.now()
    )
