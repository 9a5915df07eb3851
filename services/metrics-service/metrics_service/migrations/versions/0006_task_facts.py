"""Task facts kept where the adoption report reads them.

m_timeline.tasks_done: the stay's stage has required tasks for the lead and all are completed.
m_leads.open_task_due_ts / open_task_overdue: earliest due time of the lead's open required tasks, and
whether one of them was flagged overdue. The projector refreshes them for the leads a batch touches.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("m_timeline", sa.Column("tasks_done", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("m_leads", sa.Column("open_task_due_ts", sa.Float, nullable=True))
    op.add_column("m_leads", sa.Column("open_task_overdue", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("m_leads", "open_task_overdue")
    op.drop_column("m_leads", "open_task_due_ts")
    op.drop_column("m_timeline", "tasks_done")
