"""model_alias_events: every move of a model registry alias, under row-level security

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

MLflow keeps only where an alias points now; this table keeps where it pointed before, so
``ModelRegistry.version_at`` can say which version served production at a past moment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CONDITION = "tenant_id = current_setting('app.tenant_id', true)"


def upgrade() -> None:
    op.create_table(
        "model_alias_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.String(length=32), nullable=True),
        sa.Column("to_version", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("moved_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_alias_events")),
    )
    op.create_index(
        "ix_model_alias_events_tenant_model_alias_time",
        "model_alias_events",
        ["tenant_id", "model_name", "alias", "moved_at"],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE model_alias_events ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON model_alias_events USING ({CONDITION}) "
            f"WITH CHECK ({CONDITION})"
        )


def downgrade() -> None:
    op.drop_index("ix_model_alias_events_tenant_model_alias_time", table_name="model_alias_events")
    op.drop_table("model_alias_events")
