"""privacy: append-only data keys found by a time-ordered id; erased subjects apart (ADR-0024)

Revision ID: 0011
Revises: 0010

``data_keys`` stays as it is: the keys it holds keep opening the values sealed before (which
find their key by subject).  Its tombstones (``wrapped`` NULL: erased people) are copied to
``erased_subjects``, the table writers check from now on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("kek_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("erased_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "erased_subjects",
        sa.Column("subject", sa.String(length=32), nullable=False),
        sa.Column("erased_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.execute(
        "INSERT INTO erased_subjects (subject, erased_at) "
        "SELECT subject, COALESCE(erased_at, created_at) FROM data_keys WHERE wrapped IS NULL"
    )


def downgrade() -> None:
    # the tombstones go back to data_keys; keys made since 0011 are lost with their table (the
    # values sealed under them no longer open): downgrade only a store that has none
    op.execute(
        "INSERT INTO data_keys (subject, wrapped, kek_id, created_at, erased_at) "
        "SELECT e.subject, NULL, NULL, e.erased_at, e.erased_at FROM erased_subjects e "
        "WHERE NOT EXISTS (SELECT 1 FROM data_keys d WHERE d.subject = e.subject)"
    )
    op.execute(
        "UPDATE data_keys SET wrapped = NULL, kek_id = NULL "
        "WHERE subject IN (SELECT subject FROM erased_subjects)"
    )
    op.drop_table("erased_subjects")
    op.drop_table("subject_keys")
