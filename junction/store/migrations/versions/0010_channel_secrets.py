"""channels: webhook signing secrets rotated through the store, sealed at rest (ADR-0023)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_secrets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("retires_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_channel_secrets_channel", "channel_secrets", ["channel", "retires_at"])


def downgrade() -> None:
    op.drop_index("ix_channel_secrets_channel", table_name="channel_secrets")
    op.drop_table("channel_secrets")
