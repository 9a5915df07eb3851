"""A lead's timeline: entries built from the events about it (GET /v1/leads/{lead_id}/timeline).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_timeline",
        sa.Column("id", sa.String(length=50), nullable=False),
        sa.Column("org_id", sa.String(length=100), nullable=False),
        sa.Column("lead_id", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(length=100), nullable=True),
        sa.Column("producer", sa.String(length=50), nullable=False),
        sa.Column("summary", sa.String(length=600), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "event_id", "kind", name="uq_lead_timeline_event"),
    )
    op.create_index("ix_lead_timeline_lead", "lead_timeline", ["org_id", "lead_id", "occurred_at", "id"])
    op.create_index("ix_lead_timeline_correlation", "lead_timeline", ["org_id", "correlation_id"])


def downgrade() -> None:
    op.drop_table("lead_timeline")
