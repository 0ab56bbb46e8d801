"""pipeline_runs: every step of every daily run, with its outcome, under row-level security

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CONDITION = "tenant_id = current_setting('app.tenant_id', true)"


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_date", sa.DateTime(), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("shard", sa.String(length=16), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_runs")),
    )
    op.create_index(
        "ix_pipeline_runs_tenant_date", "pipeline_runs", ["tenant_id", "run_date", "started_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pipeline_runs ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON pipeline_runs USING ({CONDITION}) "
            f"WITH CHECK ({CONDITION})"
        )


def downgrade() -> None:
    op.drop_index("ix_pipeline_runs_tenant_date", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
