"""Which schema revision a database is at, and the newest one shipped, without Alembic.

Every verb that touches the database first checks that it is migrated. Alembic's own answer
(a migration context and a script directory, which load Mako and Pygments) costs about 0.3 s
of start-up; the check needs one row of ``alembic_version`` and the migrations' file names.
``roiml.db.migrate`` (Alembic itself) is for migrating; tests/test_migrations.py holds the two
answers equal.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, inspect, text

__all__ = ["MIGRATIONS_DIR", "current_revision", "head_revision"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Migration files are named after their revision id, which each revises the one before:
# 0001_initial_schema.py, 0002_row_level_security.py, ...
_MIGRATION_FILE = re.compile(r"^(\d{4})_\w+\.py$")
_VERSION_TABLE = "alembic_version"


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(_VERSION_TABLE):
            return None
        row = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def head_revision() -> str | None:
    """The newest revision shipped with this package (None when it ships none)."""
    found = [
        match.group(1)
        for path in (MIGRATIONS_DIR / "versions").iterdir()
        if (match := _MIGRATION_FILE.match(path.name))
    ]
    return max(found) if found else None
