"""Temporary tables loaded with :func:`bulk_insert` so the database can join or copy from them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Column, Connection, MetaData, String, Table
from sqlalchemy import Enum as SAEnum
from sqlalchemy.types import TypeEngine

__all__ = ["create_temporary", "plain_type"]


def plain_type(kind: TypeEngine[Any]) -> TypeEngine[Any]:
    """``kind`` without the CHECK constraint an enum would bring along; the target checks it."""
    if isinstance(kind, SAEnum):
        return String(kind.length)
    return kind


def create_temporary(conn: Connection, prefix: str, columns: list[Column[Any]]) -> Table:
    """Create a uniquely named temporary table on ``conn``; PostgreSQL drops it at commit.

    Callers drop it themselves once done, because a pooled SQLite connection keeps it otherwise.
    """
    table = Table(
        f"{prefix}_{uuid.uuid4().hex[:12]}",
        MetaData(),
        *columns,
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    table.create(conn)
    return table
