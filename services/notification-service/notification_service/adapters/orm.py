"""notification-service's tables. Only this service reads or writes them."""
import sqlalchemy as sa

from salesflow_shared.infra_tables import add_infrastructure_tables
from salesflow_shared.ownership import add_past_owners_table

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
# reps that owned a lead before its current owner (LeadAssigned): they keep read access to its enrollments
lead_past_owners = add_past_owners_table(metadata)

Id = sa.String(36)
Org = sa.String(100)
Ts = sa.DateTime(timezone=True)

templates = sa.Table(
    "templates", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # Optional well-known purpose, e.g. "rep.lead_assigned": used instead of the built-in rep emails.
    sa.Column("key", sa.String(100), nullable=True),
    sa.Column("audience", sa.String(20), nullable=False),  # prospect, rep
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Ts, nullable=False),
    sa.Column("updated_at", Ts, nullable=False),
    sa.UniqueConstraint("org_id", "key", name="uq_templates_org_key"),
)

# What this service knows of leads (LeadCreated/LeadUpdated/StageAdvanced/outcomes) and of reps (the Rep*
# directory events; LeadAssigned for reps not in it yet).
leads = sa.Table(
    "leads", metadata,
    sa.Column("org_id", Org, primary_key=True),
    sa.Column("lead_id", sa.String(100), primary_key=True),
    sa.Column("email", sa.String(320)),
    sa.Column("first_name", sa.String(200)),
    sa.Column("last_name", sa.String(200)),
    sa.Column("company", sa.String(300)),
    sa.Column("title", sa.String(200)),
    sa.Column("phone", sa.String(100)),
    sa.Column("country", sa.String(100)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("language", sa.String(20)),
    sa.Column("product_line", sa.String(100)),
    sa.Column("value", sa.Numeric(18, 2)),
    sa.Column("currency", sa.String(3)),
    sa.Column("source", sa.String(100)),
    sa.Column("form_id", sa.String(100)),
    sa.Column("custom_fields", sa.JSON),
    sa.Column("status", sa.String(20)),  # from lead-service
    sa.Column("owner_id", sa.String(100)),
    sa.Column("lead_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pipeline_id", sa.String(100)),
    sa.Column("stage_id", sa.String(100)),
    sa.Column("stage_name", sa.String(200)),
    sa.Column("outcome", sa.String(20)),  # won, lost (pipeline-service), None while open
    sa.Column("won_value", sa.Numeric(18, 2)),  # LeadWon's value, currency and notes (the customer hand-over)
    sa.Column("won_currency", sa.String(3)),
    sa.Column("won_notes", sa.Text),
    sa.Column("entered_stages", sa.JSON),  # [[pipeline_id, stage_id], ...] every stage the lead has entered
    sa.Column("reopened", sa.Boolean, nullable=False, server_default=sa.false()),  # reopened at least once
    sa.Column("pipeline_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unsubscribed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("erased", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", Ts, nullable=False),
    # Counted up by every statement that takes the row's lock first in its transaction (repository.py).
    sa.Column("lock_version", sa.BigInteger, nullable=False, server_default="0"),
)

reps = sa.Table(
    "reps", metadata,
    sa.Column("org_id", Org, primary_key=True),
    sa.Column("rep_id", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("email", sa.String(320)),
    sa.Column("timezone", sa.String(64)),
    sa.Column("updated_at", Ts, nullable=False),
    # The directory entry's version (RepCreated/RepUpdated/RepDeactivated); 0 while known only from LeadAssigned.
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("team_ids", sa.JSON),
    sa.Column("working_hours", sa.JSON),
    sa.Column("language", sa.String(20)),
)

sequences = sa.Table(
    "sequences", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("trigger", sa.String(30), nullable=False),
    sa.Column("pipeline_id", sa.String(100)),
    sa.Column("stage_id", sa.String(100)),
    sa.Column("source", sa.String(100)),
    sa.Column("steps", sa.JSON, nullable=False),
    sa.Column("business_timezone", sa.String(64)),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", Ts, nullable=False),
    sa.Column("updated_at", Ts, nullable=False),
    sa.Index("ix_sequences_org_trigger", "org_id", "trigger"),
)

enrollments = sa.Table(
    "enrollments", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("sequence_id", Id, nullable=False),
    sa.Column("lead_id", sa.String(100), nullable=False),
    # What started it (e.g. "stage:<id>@<pipeline version>"): a replayed trigger finds the same row.
    sa.Column("trigger_key", sa.String(300), nullable=False),
    sa.Column("stage_id", sa.String(100)),
    sa.Column("status", sa.String(20), nullable=False),  # active, completed, stopped
    sa.Column("stop_reason", sa.String(50)),
    sa.Column("next_step", sa.Integer, nullable=False),
    sa.Column("next_due_at", Ts),
    sa.Column("created_at", Ts, nullable=False),
    sa.Column("updated_at", Ts, nullable=False),
    sa.UniqueConstraint("org_id", "sequence_id", "lead_id", "trigger_key", name="uq_enrollments_trigger"),
    sa.Index("ix_enrollments_due", "status", "next_due_at"),
    sa.Index("ix_enrollments_lead", "org_id", "lead_id"),
)

# Every outbound message or call: recorded (pending) before it is attempted, then sent / failed / cancelled.
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("idem_key", sa.String(400), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # email, mailchimp, webhook
    sa.Column("recipient_kind", sa.String(20), nullable=False),  # prospect, rep, list, webhook
    sa.Column("recipient", sa.String(400)),
    sa.Column("lead_id", sa.String(100)),
    sa.Column("rep_id", sa.String(100)),
    sa.Column("reason", sa.String(50), nullable=False),
    sa.Column("sequence_id", Id),
    sa.Column("enrollment_id", Id),
    sa.Column("step", sa.Integer),
    sa.Column("template_id", Id),
    sa.Column("rule_id", Id),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", Ts),
    sa.Column("payload", sa.JSON),
    sa.Column("message_id", sa.String(300)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", Ts, nullable=False),
    sa.Column("updated_at", Ts, nullable=False),
    sa.Column("sent_at", Ts),
    sa.UniqueConstraint("org_id", "idem_key", name="uq_deliveries_idem_key"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_lead", "org_id", "lead_id", "created_at"),
)

mailchimp_accounts = sa.Table(
    "mailchimp_accounts", metadata,
    sa.Column("org_id", Org, primary_key=True),
    sa.Column("api_key", sa.String(200), nullable=False),
    sa.Column("nurture_list_id", sa.String(100)),
    sa.Column("nurture_tag", sa.String(100)),
    sa.Column("updated_at", Ts, nullable=False),
)

mailchimp_rules = sa.Table(
    "mailchimp_rules", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("pipeline_id", sa.String(100)),
    # stage_entry, stage_exit (with stage_id), won, lost, disqualified, reopened (domain/mailchimp_lists.py)
    sa.Column("trigger", sa.String(20), nullable=False, server_default="stage_entry"),
    sa.Column("stage_id", sa.String(100)),
    sa.Column("action", sa.String(20), nullable=False),  # subscribe, unsubscribe
    sa.Column("list_id", sa.String(100), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("merge_fields", sa.JSON, nullable=False),  # merge tag → lead variable, e.g. {"FNAME": "first_name"}
    sa.Column("status_if_new", sa.String(20), nullable=False),
    sa.Column("created_at", Ts, nullable=False),
    sa.Index("ix_mailchimp_rules_stage", "org_id", "stage_id"),
)

# Each pipeline's stages as PipelineDefined (or, before one arrived, StageAdvanced's pipeline_stage_ids) tells
# them: Mailchimp rules are checked against them.
known_pipelines = sa.Table(
    "known_pipelines", metadata,
    sa.Column("org_id", Org, primary_key=True),
    sa.Column("pipeline_id", sa.String(100), primary_key=True),
    sa.Column("stage_ids", sa.JSON, nullable=False),
    sa.Column("updated_at", Ts, nullable=False),
    # The PipelineDefined version held (0: known only from a lead's StageAdvanced, which lists the stages too).
    sa.Column("definition_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("name", sa.String(200), nullable=True),
)

# The lists a lead was put on, so disqualify / erase / unsubscribe can take it off them again.
mailchimp_members = sa.Table(
    "mailchimp_members", metadata,
    sa.Column("org_id", Org, primary_key=True),
    sa.Column("lead_id", sa.String(100), primary_key=True),
    sa.Column("list_id", sa.String(100), primary_key=True),
    sa.Column("subscriber_hash", sa.String(32), nullable=False),
    sa.Column("updated_at", Ts, nullable=False),
    # How the lead was last subscribed (a changed address is re-subscribed the same way), and whether it still is.
    sa.Column("subscribed", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("tags", sa.JSON),
    sa.Column("merge_fields", sa.JSON),  # Mailchimp merge tag → lead field
    sa.Column("status_if_new", sa.String(20)),
)

task_assignees = sa.Table(
    "task_assignees", metadata,
    sa.Column("org_id", Org, primary_key=True),
    sa.Column("task_id", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),  # the task's subject_version in pipeline-service's events
    sa.Column("assignee_id", sa.String(100)),
    sa.Column("updated_at", Ts, nullable=False),
)

milestone_rules = sa.Table(
    "milestone_rules", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("stage_id", sa.String(100)),
    sa.Column("min_value", sa.Numeric(18, 2)),
    sa.Column("currency", sa.String(3)),
    sa.Column("channels", sa.JSON, nullable=False),  # ["email", "webhook"]
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", Ts, nullable=False),
)

webhook_subscriptions = sa.Table(
    "webhook_subscriptions", metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("org_id", Org, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),  # lead_assigned, task_due, task_overdue, milestone
    sa.Column("rep_id", sa.String(100)),  # None: every rep of the org
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", Ts, nullable=False),
)
