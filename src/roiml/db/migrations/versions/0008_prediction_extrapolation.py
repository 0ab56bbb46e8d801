"""ml_predictions: extrapolation_days, how far past the entity's last fresh data an answer reached

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

A prediction asked for a date after the last data known of its entity extrapolates; the log
keeps by how many days, so monitoring and an auditor can tell such answers from the rest.
Null when the answer did not extrapolate (or was logged before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ml_predictions") as batch:
        batch.add_column(sa.Column("extrapolation_days", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ml_predictions") as batch:
        batch.drop_column("extrapolation_days")
