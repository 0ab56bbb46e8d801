"""indexes for a single home's comparable sales: homes by market and by latitude, sales by time

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

The API computes a home's vector on demand when the stores miss it; its comparable sales read
the priced sales of the home's market and of a latitude/longitude box around it, in the
comparable window (``roiml.features.sources._comparable_branch``). Without these indexes each
of those reads is a scan of the tenant's homes and transactions.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_properties_tenant_market", "properties", ["tenant_id", "market_id"])
    op.create_index("ix_properties_tenant_latitude", "properties", ["tenant_id", "latitude"])
    op.create_index("ix_transactions_tenant_time", "transactions", ["tenant_id", "closed_at"])


def downgrade() -> None:
    op.drop_index("ix_transactions_tenant_time", table_name="transactions")
    op.drop_index("ix_properties_tenant_latitude", table_name="properties")
    op.drop_index("ix_properties_tenant_market", table_name="properties")
