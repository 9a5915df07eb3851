"""Tallies without the index on when they changed: only the live stream's old poll (the latest change of a
program) read it, and an indexed column that every tally update writes keeps each update from being a
heap-only (HOT) update, so each added an entry to both of the table's indexes.

Revision ID: g0003
Revises: g0002
"""
from alembic import op

revision = "g0003"
down_revision = "g0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_program_scores_changed", table_name="program_scores")


def downgrade() -> None:
    op.create_index("ix_program_scores_changed", "program_scores", ["program_id", "changed_at"], unique=False)
