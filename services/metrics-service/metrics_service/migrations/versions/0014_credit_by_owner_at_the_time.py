"""Credit by who owned the lead when: the assignment history (m_assignments), the owner, team and territory at
the close (credit_*) and at creation (first_*) on m_leads; timeline rows now carry the owner credited with them
(an ended stay: the owner at its exit; an outcome: the owner at that moment) instead of the current owner;
first_owner_activity_ts counts only the human touches of the owner at creation (not sequence emails).

None of this can be derived from the read models already there (they kept only the latest owner), so this
revision deletes the read models and rollups and marks the whole event log unprojected: the projector replays
it (in the order of the log, with the same code as always), which also fills the rollups. Reports answer from
partly rebuilt tables until the projector has caught up (`pending` in the logs; minutes per million events).

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LEAD_COLUMNS = ("credit_owner_id", "credit_team_id", "credit_territory_id", "first_owner_id", "first_team_id",
                "first_territory_id")
OPEN = "outcome = 'open'"
# name: (key columns, included columns, partial-index condition) on m_leads, as in adapters/orm.py
COVERS = {
    "ix_m_leads_created_cover": (["org_id", "created_ts"], [
        "first_owner_id", "first_team_id", "pipeline_id", "first_owner_activity_ts", "first_position",
        "max_position", "ask_entered_ts", "outcome", "product_line", "source", "territory_id"], None),
    "ix_m_leads_entered_cover": (["org_id", "pipeline_entered_ts"],
                                 ["pipeline_id", "max_position", "first_owner_id", "first_team_id"], None),
    "ix_m_leads_closed_cover": (["org_id", "closed_ts"], [
        "outcome", "won_value", "value", "won_currency", "currency", "created_ts", "ask_entered_ts",
        "credit_owner_id", "credit_team_id", "pipeline_id", "owner_id"], None),
    "ix_m_leads_open_cover": (["org_id", "expected_close_ts"], [
        "pipeline_entered_ts", "value", "currency", "current_win_probability", "owner_id", "team_id",
        "credit_owner_id", "credit_team_id", "pipeline_id",
        "is_created", "open_task_overdue", "open_task_due_ts"], OPEN),
}
READ_MODELS = ("m_leads", "m_timeline", "m_stages", "m_reps", "m_activities", "m_rep_daily", "m_tasks",
               "m_assignments", "m_closed_months", "m_exit_months", "m_stay_months", "m_cohort_months",
               "m_created_months", "m_reach_months", "m_won_months")


def upgrade() -> None:
    op.create_table(
        "m_assignments",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("at_ts", sa.Float, nullable=False),
        sa.Column("ver", sa.Integer, nullable=False),
        sa.Column("tb", sa.String(80), nullable=False),
        sa.Column("owner_id", sa.String(100), nullable=True),
        sa.Column("team_id", sa.String(100), nullable=True),
        sa.Column("territory_id", sa.String(100), nullable=True),
        sa.Column("trigger", sa.String(40), nullable=True),
    )
    op.create_index("ix_m_assignments_lead", "m_assignments", ["org_id", "lead_id"])
    with op.batch_alter_table("m_leads") as batch:
        for column in LEAD_COLUMNS:
            batch.add_column(sa.Column(column, sa.String(100), nullable=True))
    for name, (columns, include, where) in COVERS.items():
        op.drop_index(name, table_name="m_leads")
        condition = sa.text(where) if where else None
        op.create_index(name, "m_leads", columns, postgresql_include=include, postgresql_where=condition,
                        sqlite_where=condition)
    for table in READ_MODELS:
        op.execute(f"DELETE FROM {table}")
    op.execute("UPDATE event_log SET projected = FALSE")


def downgrade() -> None:
    for name in COVERS:
        op.drop_index(name, table_name="m_leads")
    with op.batch_alter_table("m_leads") as batch:
        for column in LEAD_COLUMNS:
            batch.drop_column(column)
    op.drop_table("m_assignments")
    for name, (columns, include, where) in COVERS.items():  # revision 0007's columns
        include = list(dict.fromkeys(BEFORE.get(c, c) for c in include if c != "currency"))
        condition = sa.text(where) if where else None
        op.create_index(name, "m_leads", columns, postgresql_include=include, postgresql_where=condition,
                        sqlite_where=condition)
    # The read models stay as they are (the stays keep the owner at their exit instead of the current owner
    # until a rebuild: `POST /v1/reports/rebuild` or the cli's `rebuild`).


BEFORE = {"first_owner_id": "owner_id", "first_team_id": "team_id", "credit_owner_id": "owner_id",
          "credit_team_id": "team_id"}
