"""indexes for agent-level features: users and transactions by agent

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Computing one homeowner's vector counts their agent's clients and deals; without these
indexes that is a full scan of users and transactions per request.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_tenant_agent", "users", ["tenant_id", "agent_id"])
    op.create_index(
        "ix_transactions_tenant_agent_time", "transactions", ["tenant_id", "agent_id", "closed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_tenant_agent_time", table_name="transactions")
    op.drop_index("ix_users_tenant_agent", table_name="users")
