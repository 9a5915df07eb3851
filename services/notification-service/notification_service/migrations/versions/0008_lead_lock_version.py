"""leads.lock_version: counted up by every statement that takes a lead's lock first in its transaction, so that a
statement that both locks the lead and reads what is kept under that lock (its enrollments and lists) can tell
whether another transaction held the lock between its snapshot and its lock (adapters/repository.py,
`store_newer_snapshot_reading_follow_ups`).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("lock_version", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("lock_version")
