"""users, properties, transactions: attributes, the values of the tenant's declared columns

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

A tenant's files carry more than the shared schema (a sales file's condition, grade, view, zip
code). The tenant declares those columns (``roiml data contract add``) and the importer stores
their typed values in one JSON object per row: JSONB on PostgreSQL, JSON text on SQLite.
Nullable: rows without declared columns (the simulated world, most tenants) hold NULL. The three
tables are the ones a tenant's files describe in more detail; the behaviour logs are written by
the platform and have nothing to add. Row-level security is per row, so the new column is covered
by the tables' existing policies.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = ("users", "properties", "transactions")


def upgrade() -> None:
    json_type = sa.JSON().with_variant(JSONB(), "postgresql")
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("attributes", json_type, nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("attributes")
