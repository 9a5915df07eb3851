"""task_assignees: who holds each task as far as pipeline-service told us (TaskCreated, TaskReassigned), with the
task's version, so a replayed or late (older) event cannot move a reminder back to a former assignee.

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
    op.create_table(
        "task_assignees",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("task_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("assignee_id", sa.String(100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "task_id"),
    )


def downgrade() -> None:
    op.drop_table("task_assignees")
