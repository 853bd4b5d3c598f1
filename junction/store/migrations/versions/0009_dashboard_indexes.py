"""dashboard: indexes for the time-windowed aggregates and the lookups (issue 10, ADR-0020)

The overview's per-bucket counts read one time window through an index on its time column
(an index-only scan on PostgreSQL); a record's journey finds its deliveries and its earlier
quarantine entries by key; the search finds records by source key; open quarantine groups and
the outbox's dead and pending rows are reached by status.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# (name, table, columns, PostgreSQL operator classes)
INDEXES: tuple[tuple[str, str, list[str], dict[str, str]], ...] = (
    ("ix_records_received_at", "records", ["received_at"], {}),
    ("ix_records_source_key", "records", ["source_key"], {}),
    ("ix_scores_scored_at", "scores", ["scored_at"], {}),
    ("ix_deliveries_record_id", "deliveries", ["record_id"], {}),
    ("ix_deliveries_status_created", "deliveries", ["status", "created_at"], {}),
    ("ix_deliveries_status_delivered", "deliveries", ["status", "delivered_at"], {}),
    ("ix_quarantine_created_at", "quarantine", ["created_at"], {}),
    (
        "ix_quarantine_group",
        "quarantine",
        ["status", "pipeline", "stage", "error_code"],
        {},
    ),
    # pattern ops: a record's history matches its key and "<key>#<n>" (LIKE prefix) by index
    (
        "ix_quarantine_record_key",
        "quarantine",
        ["record_key"],
        {"record_key": "varchar_pattern_ops"},
    ),
)


def upgrade() -> None:
    for name, table, columns, ops in INDEXES:
        op.create_index(name, table, columns, postgresql_ops=ops)


def downgrade() -> None:
    for name, table, _columns, _ops in reversed(INDEXES):
        op.drop_index(name, table_name=table)
