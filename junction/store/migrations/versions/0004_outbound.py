"""outbound channels: routes, provider ids, alert hygiene, endpoint health, suppressions, events

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as b:
        b.add_column(sa.Column("route", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("remote_id", sa.String(length=128), nullable=True))
        b.add_column(sa.Column("remote_status", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("ack_at", sa.Float(), nullable=True))
        b.add_column(sa.Column("escalate_at", sa.Float(), nullable=True))
        b.add_column(sa.Column("group_id", sa.String(length=600), nullable=True))
    op.create_index("ix_deliveries_remote_id", "deliveries", ["remote_id"])
    op.create_index("ix_deliveries_escalate_at", "deliveries", ["escalate_at"])
    op.create_index("ix_deliveries_channel_status", "deliveries", ["channel", "status"])
    with op.batch_alter_table("endpoints") as b:
        b.add_column(sa.Column("failing_since", sa.Float(), nullable=True))
        b.add_column(sa.Column("last_success_at", sa.Float(), nullable=True))
        b.add_column(sa.Column("last_failure_at", sa.Float(), nullable=True))
    op.create_table(
        "suppressions",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "address_key"),
    )
    op.create_table(
        "send_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("key_kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("delivery_id", sa.String(length=600), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_send_log_key", "send_log", ["channel", "key_kind", "key", "at"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=600), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_at", "events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_events_at", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_send_log_key", table_name="send_log")
    op.drop_table("send_log")
    op.drop_table("suppressions")
    with op.batch_alter_table("endpoints") as b:
        b.drop_column("last_failure_at")
        b.drop_column("last_success_at")
        b.drop_column("failing_since")
    op.drop_index("ix_deliveries_channel_status", table_name="deliveries")
    op.drop_index("ix_deliveries_escalate_at", table_name="deliveries")
    op.drop_index("ix_deliveries_remote_id", table_name="deliveries")
    with op.batch_alter_table("deliveries") as b:
        for col in ("group_id", "escalate_at", "ack_at", "remote_status", "remote_id", "route"):
            b.drop_column(col)
