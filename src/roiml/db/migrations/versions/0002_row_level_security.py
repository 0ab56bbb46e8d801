"""row-level security: every tenant table is visible only to its tenant

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

The policies key on ``current_setting('app.tenant_id', true)``, which
:func:`roiml.db.engine.tenant_session` sets per transaction. Unset, it is NULL and no row
matches, so a connection that forgot to set it sees nothing rather than everything. The table
owner and superusers bypass RLS by design: they run migrations and admin jobs; the API and
jobs connect as the application role.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "agents",
    "users",
    "properties",
    "document_access_events",
    "email_events",
    "platform_sessions",
    "alerts",
    "searches",
    "transactions",
    "market_statistics",
    "economic_indicators",
    "ml_features",
    "ml_feature_values",
    "ml_models",
    "ml_experiments",
    "ml_predictions",
    "ml_monitoring",
)
CONDITION = "tenant_id = current_setting('app.tenant_id', true)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} "
            f"USING ({CONDITION}) WITH CHECK ({CONDITION})"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
