"""privacy: data keys per subject, the store's encryption settings, subject columns (ADR-0021)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SUBJECT_TABLES = ("records", "deliveries", "quarantine")


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("erased_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_table(
        "privacy_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kek_source", sa.String(length=600), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("subject_key", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for table in _SUBJECT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("subject", sa.String(length=32), nullable=True))
    op.create_index("ix_quarantine_subject", "quarantine", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_subject", table_name="quarantine")
    for table in _SUBJECT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("subject")
    op.drop_table("privacy_settings")
    op.drop_table("data_keys")
