"""properties: latitude and longitude, nullable (a home's location, for comparable sales)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Location is what real valuation models win on (what sold nearby, recently). Both columns are
nullable: the simulated world and many tenants' files have no coordinates, and a home without
them simply has no comparable-sales features. Degrees, WGS 84.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch.add_column(sa.Column("longitude", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.drop_column("longitude")
        batch.drop_column("latitude")
