"""quota_milestones: one row per quota found reached, so QuotaReached is published once per quota.

The row is inserted (ON CONFLICT DO NOTHING) in the transaction that writes the event to the outbox; a second
replica, or the next run of the worker, finds it and publishes nothing. Not a read model: a rebuild keeps it.

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_milestones",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("quota_id", sa.String(36), nullable=False),
        sa.Column("attained", sa.Numeric(18, 2), nullable=False),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "quota_id"),
    )


def downgrade() -> None:
    op.drop_table("quota_milestones")
