"""Whether the current stage's goal already held when last evaluated (a lead moved by hand into a stage
whose goal holds stays there until the goal becomes true again).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("goal_held", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.drop_column("goal_held")
