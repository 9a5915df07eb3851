"""lead_past_owners: the reps that owned a lead before its current owner (they keep read access to the
lead's sequence enrollments).

Revision ID: 0005
Revises: 0004
"""
from alembic import op

from salesflow_shared.ownership import create_past_owners_table, drop_past_owners_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_past_owners_table(op)


def downgrade() -> None:
    drop_past_owners_table(op)
