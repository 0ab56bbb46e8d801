"""The PostgreSQL application role: what the API and jobs connect as, so RLS applies to them."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

from roiml.db.engine import is_postgres
from roiml.errors import ConfigurationError

__all__ = ["grant_app_role"]

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_app_role(engine: Engine, role: str, password: str | None = None) -> None:
    """Create ``role`` if missing (LOGIN, no superuser, no BYPASSRLS) and grant it DML.

    Run as the owner of the tables. Idempotent.
    """
    if not is_postgres(engine):
        raise ConfigurationError("application roles exist only on PostgreSQL")
    if not _ROLE_NAME.match(role):
        raise ConfigurationError(f"role name {role!r} must be lower-case letters, digits and _")
    with engine.begin() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
        ).scalar()
        if not exists:
            # Identifiers cannot be bound parameters; the name was validated above.
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
        if password is not None:
            conn.execute(text(f"ALTER ROLE \"{role}\" PASSWORD '{_quote_literal(password)}'"))
        database: str = conn.execute(text("SELECT current_database()")).scalar_one()
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(
            text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
        )
        conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
        # The migration bookkeeping table is the owner's to change; the role may only read it,
        # which every command does to refuse a database below the newest schema.
        conn.execute(text(f'REVOKE ALL ON alembic_version FROM "{role}"'))
        conn.execute(text(f'GRANT SELECT ON alembic_version TO "{role}"'))


def _quote_literal(value: str) -> str:
    return value.replace("'", "''")
