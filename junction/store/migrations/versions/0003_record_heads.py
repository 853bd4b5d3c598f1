"""record heads: the newest version of each source record, for latest-wins routing

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_heads",
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("source_key", sa.String(length=384), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=512), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "source_key"),
    )


def downgrade() -> None:
    op.drop_table("record_heads")
