"""pipeline-service's tables. Only this service reads or writes them."""
import sqlalchemy as sa

from salesflow_shared.infra_tables import add_infrastructure_tables
from salesflow_shared.ownership import add_past_owners_table

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
# reps that owned a lead before its current owner (the closer after the hand-over): they keep read access
lead_past_owners = add_past_owners_table(metadata)

TS = sa.DateTime(timezone=True)

pipelines = sa.Table(
    "pipelines", metadata,
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

sa.Index("ix_pipelines_org_id", pipelines.c.org_id)

stages = sa.Table(
    "stages", metadata,
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
sa.Index("ix_stages_pipeline_id", stages.c.pipeline_id)

# The lead projection and its position in a pipeline, one row per lead (partial until events arrive).
positions = sa.Table(
    "positions", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("lead_id", sa.String(100), primary_key=True),
    sa.Column("lead", sa.JSON, nullable=False),  # the latest LeadSnapshot (JSON), {} until LeadCreated
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
    sa.Column("visit_id", sa.String(36), nullable=True),  # the open stage_history row
    sa.Column("reengage_at", TS, nullable=True),
    sa.Column("lost_reason", sa.String(100), nullable=True),
    sa.Column("closed_at", TS, nullable=True),
    sa.Column("won_value", sa.Numeric(18, 2), nullable=True),
    sa.Column("won_currency", sa.String(3), nullable=True),
    sa.Column("event_version", sa.Integer, nullable=False, server_default="0"),  # our events about the lead
    # Set when a nurtured lead reopens: its goals then count activities from that moment only.
    sa.Column("cycle_started_at", TS, nullable=True),
    # The current stage's goal held at the last evaluation: the lead advances when it *becomes* true, so a
    # lead moved back by hand into a stage whose goal holds is not bounced forward at the next event.
    sa.Column("goal_held", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", TS, nullable=False),
)
sa.Index("ix_positions_nurturing", positions.c.reengage_at, positions.c.status)
sa.Index("ix_positions_stage", positions.c.org_id, positions.c.stage_id)

activities = sa.Table(
    "activities", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("activity_id", sa.String(100), primary_key=True),
    sa.Column("lead_id", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("received_at", TS, nullable=False),
)
sa.Index("ix_activities_lead", activities.c.org_id, activities.c.lead_id)

stage_history = sa.Table(
    "stage_history", metadata,
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
sa.Index("ix_stage_history_lead", stage_history.c.org_id, stage_history.c.lead_id, stage_history.c.seq)

tasks = sa.Table(
    "tasks", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("lead_id", sa.String(100), nullable=False),
    sa.Column("pipeline_id", sa.String(36), nullable=True),
    sa.Column("stage_id", sa.String(36), nullable=True),
    sa.Column("visit_id", sa.String(36), nullable=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("task_type", sa.String(20), nullable=False),
    sa.Column("required", sa.Boolean, nullable=False),
    sa.Column("assignee_kind", sa.String(10), nullable=False),  # owner (follows the lead owner), rep, team
    sa.Column("assignee_id", sa.String(100), nullable=True),
    sa.Column("team_id", sa.String(100), nullable=True),
    sa.Column("due_at", TS, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # open, done, skipped
    sa.Column("created_at", TS, nullable=False),
    sa.Column("completed_at", TS, nullable=True),
    sa.Column("completed_by", sa.String(100), nullable=True),
    sa.Column("skip_reason", sa.String(40), nullable=True),
    sa.Column("overdue_at", TS, nullable=True),  # set once, when TaskOverdue was emitted
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
)
sa.Index("ix_tasks_assignee", tasks.c.org_id, tasks.c.assignee_id, tasks.c.status, tasks.c.due_at)
sa.Index("ix_tasks_lead", tasks.c.org_id, tasks.c.lead_id, tasks.c.status)
sa.Index("ix_tasks_overdue", tasks.c.due_at, postgresql_where=sa.text("status = 'open' AND overdue_at IS NULL"),
         sqlite_where=sa.text("status = 'open' AND overdue_at IS NULL"))

# The org's business calendar (salesflow_shared.calendar): task due dates count its working days.
business_calendars = sa.Table(
    "business_calendars", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("working_days", sa.JSON, nullable=False),
    sa.Column("country", sa.String(2), nullable=True),
    sa.Column("subdivision", sa.String(10), nullable=True),
    sa.Column("days_off", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)
