"""Covering indexes for the reports at a million leads.

Each report reads one period of leads or stays; these indexes hold the columns it reads next to its period
key, so PostgreSQL answers with index-only scans, and the stay indexes are ordered per team and stage (or per
stage) so the medians and 75th percentiles sort one small group at a time. They replace the plain period
indexes they cover (created, entered and closed time of leads, exit time of stays).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ENDED_STAY = "kind = 'stage' AND next_ts IS NOT NULL"
OPEN = "outcome = 'open'"
# name: (table, key columns, included columns, partial-index condition)
NEW = {
    "ix_m_leads_created_cover": ("m_leads", ["org_id", "created_ts"], [
        "owner_id", "team_id", "pipeline_id", "first_owner_activity_ts", "first_position", "max_position",
        "ask_entered_ts", "outcome", "product_line", "source", "territory_id"], None),
    "ix_m_leads_entered_cover": ("m_leads", ["org_id", "pipeline_entered_ts"],
                                 ["pipeline_id", "max_position", "owner_id", "team_id"], None),
    "ix_m_leads_closed_cover": ("m_leads", ["org_id", "closed_ts"], [
        "outcome", "won_value", "value", "won_currency", "currency", "created_ts", "ask_entered_ts", "owner_id",
        "team_id", "pipeline_id"], None),
    "ix_m_leads_open_stage": ("m_leads", ["org_id", "team_id", "pipeline_id", "current_stage_id",
                                          "current_stage_entered_ts"], ["lead_id", "owner_id"], OPEN),
    "ix_m_leads_open_cover": ("m_leads", ["org_id", "expected_close_ts"], [
        "pipeline_entered_ts", "value", "current_win_probability", "owner_id", "team_id", "pipeline_id",
        "is_created", "open_task_overdue", "open_task_due_ts"], OPEN),
    "ix_m_timeline_team_stays": ("m_timeline", ["org_id", "team_id", "pipeline_id", "stage_id", "at_ts"], [
        "next_ts", "owner_id", "position", "next_kind", "next_position", "lead_pipeline_id"], ENDED_STAY),
    "ix_m_timeline_cohort_stays": ("m_timeline", ["org_id", "pipeline_id", "stage_id", "cohort_ts"], [
        "at_ts", "next_ts", "next_kind", "lead_pipeline_id", "lead_id", "owner_id", "team_id"], ENDED_STAY),
    "ix_m_timeline_exits": ("m_timeline", ["org_id", "next_ts"], [
        "owner_id", "team_id", "next_kind", "next_reason", "tasks_done", "lead_pipeline_id"], ENDED_STAY),
    "ix_m_rep_daily_day": ("m_rep_daily", ["org_id", "day"], [], None),
}
REPLACED = {"ix_m_leads_created": ("m_leads", ["org_id", "created_ts"]),
            "ix_m_leads_entered": ("m_leads", ["org_id", "pipeline_entered_ts"]),
            "ix_m_leads_closed": ("m_leads", ["org_id", "closed_ts"]),
            "ix_m_timeline_ended": ("m_timeline", ["org_id", "next_ts"])}


def upgrade() -> None:
    for name in REPLACED:  # IF EXISTS: a database created from 0002 after this revision never had the first three
        op.execute(f"DROP INDEX IF EXISTS {name}")
    for name, (table, columns, include, where) in NEW.items():
        condition = sa.text(where) if where else None
        op.create_index(name, table, columns, postgresql_include=include or None, postgresql_where=condition,
                        sqlite_where=condition)


def downgrade() -> None:
    for name, (table, _, _, _) in NEW.items():
        op.drop_index(name, table_name=table)
    for name, (table, columns) in REPLACED.items():
        op.create_index(name, table, columns)
