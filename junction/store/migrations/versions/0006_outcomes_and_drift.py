"""scoring: outcomes (labels from the CRM for training and A/B reports) and drift reports

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("record_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("observed_at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "kind"),
    )
    op.create_index("ix_outcomes_observed", "outcomes", ["kind", "observed_at"])
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pipeline", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("computed_at", sa.Float(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("max_psi", sa.Float(), nullable=True),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_drift_reports_model", "drift_reports", ["model", "computed_at"])
    op.create_index("ix_drift_reports_pipeline", "drift_reports", ["pipeline", "computed_at"])
    op.create_index("ix_scores_model_time", "scores", ["model", "model_version", "scored_at"])


def downgrade() -> None:
    op.drop_index("ix_scores_model_time", table_name="scores")
    op.drop_index("ix_drift_reports_pipeline", table_name="drift_reports")
    op.drop_index("ix_drift_reports_model", table_name="drift_reports")
    op.drop_table("drift_reports")
    op.drop_index("ix_outcomes_observed", table_name="outcomes")
    op.drop_table("outcomes")
