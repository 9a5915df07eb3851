"""The event log's `projected` flag: the projector applies unprojected rows to the read models in batches.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_log", sa.Column("projected", sa.Boolean, nullable=False, server_default=sa.false()))
    where = sa.text("NOT projected")
    op.create_index("ix_event_log_unprojected", "event_log", ["seq"], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index("ix_event_log_unprojected", table_name="event_log")
    op.drop_column("event_log", "projected")
