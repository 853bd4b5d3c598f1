"""stages: per-scope watermarks of the stage relay, ids never reused (ADR-0030)

Revision ID: 0013
Revises: 0012

A relay row is published when its ``published_at`` is set or its id is at most its scope's
``published_through``.  On SQLite the relay table is rebuilt with AUTOINCREMENT so that a deleted
newest row's id never comes back under a watermark (PostgreSQL's sequence never reuses one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_relay_marks",
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("published_through", sa.Integer(), nullable=False),
        sa.Column("marked_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "stage_relay", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    # rows published by a watermark only become unpublished again: settle them first
    relay = sa.table(
        "stage_relay",
        sa.column("id", sa.Integer()),
        sa.column("scope", sa.String()),
        sa.column("published_at", sa.Float()),
    )
    marks = sa.table(
        "stage_relay_marks",
        sa.column("scope", sa.String()),
        sa.column("published_through", sa.Integer()),
        sa.column("marked_at", sa.Float()),
    )
    through = (
        sa.select(marks.c.published_through).where(marks.c.scope == relay.c.scope).scalar_subquery()
    )
    marked_at = sa.select(marks.c.marked_at).where(marks.c.scope == relay.c.scope).scalar_subquery()
    op.execute(
        relay.update()
        .where(relay.c.published_at.is_(None), relay.c.id <= sa.func.coalesce(through, 0))
        .values(published_at=marked_at)
    )
    op.drop_table("stage_relay_marks")
