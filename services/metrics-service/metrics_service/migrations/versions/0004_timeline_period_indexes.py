"""Indexes for the reports' period filters on stays: entered (at_ts) and ended (next_ts) in a period.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_m_timeline_entered", "m_timeline", ["org_id", "at_ts"])
    op.create_index("ix_m_timeline_ended", "m_timeline", ["org_id", "next_ts"])


def downgrade() -> None:
    op.drop_index("ix_m_timeline_ended", table_name="m_timeline")
    op.drop_index("ix_m_timeline_entered", table_name="m_timeline")
