"""monitoring_alerts: alerts raised by roiml monitor run, under row-level security

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

One row per model version, period, kind and subject, with the webhook delivery's outcome, so
an alert is never lost when the webhook is away and never posted twice when a period is rerun.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CONDITION = "tenant_id = current_setting('app.tenant_id', true)"


def upgrade() -> None:
    op.create_table(
        "monitoring_alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delivery", sa.String(length=32), nullable=False),
        sa.Column("delivery_detail", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("raised_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitoring_alerts")),
        sa.UniqueConstraint(
            "tenant_id",
            "model_name",
            "model_version",
            "period_start",
            "kind",
            "subject",
            # Named explicitly: the conventional name is longer than PostgreSQL's 63 characters.
            name=op.f("uq_monitoring_alerts_key"),
        ),
    )
    op.create_index(
        "ix_monitoring_alerts_tenant_time", "monitoring_alerts", ["tenant_id", "raised_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE monitoring_alerts ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON monitoring_alerts USING ({CONDITION}) "
            f"WITH CHECK ({CONDITION})"
        )


def downgrade() -> None:
    op.drop_index("ix_monitoring_alerts_tenant_time", table_name="monitoring_alerts")
    op.drop_table("monitoring_alerts")
