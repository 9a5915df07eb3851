"""Pipelines, stages, the lead projection with positions, activities, stage history and tasks.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("lost_reasons", sa.JSON, nullable=False),
        sa.Column("nurture_days", sa.Integer, nullable=False, server_default="90"),
        sa.Column("template_key", sa.String(60), nullable=True),
        sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_pipelines_org_id", "pipelines", ["org_id"])
    op.create_table(
        "stages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("pipeline_id", sa.String(36), sa.ForeignKey("pipelines.id"), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("guidance", sa.Text, nullable=False, server_default=""),
        sa.Column("win_probability", sa.Numeric(5, 4), nullable=False, server_default="0"),
        sa.Column("is_ask_stage", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("goal", sa.JSON, nullable=True),
        sa.Column("task_templates", sa.JSON, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_stages_pipeline_id", "stages", ["pipeline_id"])
    op.create_table(
        "positions",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("lead_id", sa.String(100), primary_key=True),
        sa.Column("lead", sa.JSON, nullable=False),
        sa.Column("lead_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("owner_id", sa.String(100), nullable=True),
        sa.Column("owner_timezone", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(100), nullable=True),
        sa.Column("assigned_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("routed_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status", sa.String(20), nullable=False, server_default="unrouted"),
        sa.Column("pipeline_id", sa.String(36), nullable=True),
        sa.Column("stage_id", sa.String(36), nullable=True),
        sa.Column("stage_entered_at", TS, nullable=True),
        sa.Column("visit_id", sa.String(36), nullable=True),
        sa.Column("reengage_at", TS, nullable=True),
        sa.Column("lost_reason", sa.String(100), nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("won_value", sa.Numeric(18, 2), nullable=True),
        sa.Column("won_currency", sa.String(3), nullable=True),
        sa.Column("event_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_positions_nurturing", "positions", ["reengage_at", "status"])
    op.create_index("ix_positions_stage", "positions", ["org_id", "stage_id"])
    op.create_table(
        "activities",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("activity_id", sa.String(100), primary_key=True),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index("ix_activities_lead", "activities", ["org_id", "lead_id"])
    op.create_table(
        "stage_history",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("pipeline_id", sa.String(36), nullable=False),
        sa.Column("stage_id", sa.String(36), nullable=False),
        sa.Column("stage_name", sa.String(120), nullable=False),
        sa.Column("entered_at", TS, nullable=False),
        sa.Column("entry_reason", sa.String(20), nullable=False),
        sa.Column("triggering_event_id", sa.String(36), nullable=True),
        sa.Column("moved_by", sa.String(100), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("exited_at", TS, nullable=True),
        sa.Column("exit_reason", sa.String(30), nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_stage_history_lead", "stage_history", ["org_id", "lead_id", "seq"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("pipeline_id", sa.String(36), nullable=True),
        sa.Column("stage_id", sa.String(36), nullable=True),
        sa.Column("visit_id", sa.String(36), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("task_type", sa.String(20), nullable=False),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("assignee_kind", sa.String(10), nullable=False),
        sa.Column("assignee_id", sa.String(100), nullable=True),
        sa.Column("team_id", sa.String(100), nullable=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("completed_by", sa.String(100), nullable=True),
        sa.Column("skip_reason", sa.String(40), nullable=True),
        sa.Column("overdue_at", TS, nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("ix_tasks_assignee", "tasks", ["org_id", "assignee_id", "status", "due_at"])
    op.create_index("ix_tasks_lead", "tasks", ["org_id", "lead_id", "status"])
    where = sa.text("status = 'open' AND overdue_at IS NULL")
    op.create_index("ix_tasks_overdue", "tasks", ["due_at"], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index("ix_tasks_overdue", table_name="tasks")
    op.drop_index("ix_tasks_lead", table_name="tasks")
    op.drop_index("ix_tasks_assignee", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_stage_history_lead", table_name="stage_history")
    op.drop_table("stage_history")
    op.drop_index("ix_activities_lead", table_name="activities")
    op.drop_table("activities")
    op.drop_index("ix_positions_stage", table_name="positions")
    op.drop_index("ix_positions_nurturing", table_name="positions")
    op.drop_table("positions")
    op.drop_index("ix_stages_pipeline_id", table_name="stages")
    op.drop_table("stages")
    op.drop_index("ix_pipelines_org_id", table_name="pipelines")
    op.drop_table("pipelines")
