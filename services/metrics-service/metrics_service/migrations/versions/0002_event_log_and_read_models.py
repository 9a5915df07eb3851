"""The event log, the read models, quotas and forecast snapshots.

Revision ID: 0002
Revises: 0001

The column lists live once, in adapters/orm.py (like the shared infrastructure tables); this revision
creates those tables as they are defined there. Any later change to them gets its own revision.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("event_log", "m_leads", "m_timeline", "m_stages", "m_reps", "m_activities", "m_rep_daily", "m_tasks",
          "quotas", "forecast_snapshots")


def upgrade() -> None:
    from metrics_service.adapters.orm import metadata

    frozen = sa.MetaData()
    tables = [metadata.tables[name].to_metadata(frozen) for name in TABLES]
    frozen.create_all(op.get_bind(), tables=tables)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
