"""privacy: a write batch's new data keys in one page row (ADR-0026)

Revision ID: 0012
Revises: 0011

``subject_keys`` stays: its keys keep opening the values sealed under them (found by id).  New
keys go to ``key_pages``: one row per write batch of new people, the keys wrapped together.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_pages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("subjects", sa.Text(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # keys made since 0012 are lost with their table (the values sealed under them no longer
    # open): downgrade only a store that has none
    op.drop_table("key_pages")
