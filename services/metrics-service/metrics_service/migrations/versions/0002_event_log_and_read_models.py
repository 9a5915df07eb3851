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
    # the tables as they were at this revision (LATER: what came in 0003 and after)
    tables = [_copy(metadata.tables[name], frozen, LATER.get(name, ())) for name in TABLES]
    frozen.create_all(op.get_bind(), tables=tables)


LATER = {"event_log": ("projected", "ix_event_log_unprojected"),
         "m_timeline": ("ix_m_timeline_entered", "ix_m_timeline_ended", "ix_m_timeline_cohort", "owner_id",
                        "team_id", "lead_pipeline_id", "cohort_ts", "tasks_done", "ix_m_timeline_team_stays",
                        "ix_m_timeline_cohort_stays", "ix_m_timeline_exits"),
         "m_leads": ("open_task_due_ts", "open_task_overdue", "ix_m_leads_created_cover", "ix_m_leads_entered_cover",
                     "ix_m_leads_closed_cover", "ix_m_leads_open_stage", "ix_m_leads_open_cover",
                     "ix_m_leads_handed_over",
                     "credit_owner_id", "credit_team_id", "credit_territory_id", "first_owner_id", "first_team_id",
                     "first_territory_id"),
         "m_rep_daily": ("ix_m_rep_daily_day",),
         "m_tasks": ("created_ts",)}


def _copy(table: sa.Table, target: sa.MetaData, later: tuple[str, ...]) -> sa.Table:
    """A copy of `table` without the columns and indexes named in `later`."""
    return sa.Table(
        table.name, target,
        *[c._copy() for c in table.columns if c.name not in later],
        *[sa.UniqueConstraint(*[c.name for c in u.columns], name=u.name) for u in table.constraints
          if isinstance(u, sa.UniqueConstraint)],
        *[sa.Index(i.name, *[c.name for c in i.columns], unique=i.unique, **i.dialect_kwargs)
          for i in table.indexes if i.name not in later])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
