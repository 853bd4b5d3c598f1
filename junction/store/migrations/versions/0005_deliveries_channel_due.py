"""deliveries: one index per channel in due order, for the per-channel claims

The delivery worker claims each channel's oldest due rows (``channel = ? AND status = 'pending'
AND next_attempt_at <= ? ORDER BY next_attempt_at``).  With ``(channel, status)`` only, every
claim sorted the channel's whole backlog; ``(channel, status, next_attempt_at)`` reads the rows
in order and still serves the per-channel status counts by its prefix, so it replaces it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_channel_status", table_name="deliveries")
    op.create_index(
        "ix_deliveries_channel_due", "deliveries", ["channel", "status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_channel_due", table_name="deliveries")
    op.create_index("ix_deliveries_channel_status", "deliveries", ["channel", "status"])
