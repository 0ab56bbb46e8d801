"""Alembic environment: runs on the connection handed over by :mod:`roiml.db.migrate`."""

from __future__ import annotations

from alembic import context

from roiml.db import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through roiml.db.migrate
    raise RuntimeError("run migrations with `roiml db upgrade`, not the bare alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
