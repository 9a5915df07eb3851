"""assignment-service's tables. Only this service reads or writes them.

Lists (product lines, team members, territory countries...) are JSON columns: they are always read and
written with their owner row, and the same schema runs on PostgreSQL and SQLite.
"""
import sqlalchemy as sa

from salesflow_shared.infra_tables import add_infrastructure_tables

metadata = sa.MetaData()
add_infrastructure_tables(metadata)

TZ = sa.DateTime(timezone=True)

reps = sa.Table(
    "reps", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("id", sa.String(100), primary_key=True),  # the rep's user id (JWT sub), the owner_id in events
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("tier", sa.Integer, nullable=False),
    sa.Column("product_lines", sa.JSON, nullable=False),
    sa.Column("languages", sa.JSON, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("working_hours", sa.JSON, nullable=False),
    sa.Column("out_of_office", sa.JSON, nullable=False),
    sa.Column("last_assigned_at", TZ, nullable=True),
    sa.Column("row_version", sa.Integer, nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

# The last version published for a rep removed from the directory: a rep re-created with the same id continues
# from it, so other services' copies (which keep the newest version) take the new entry instead of ignoring it.
removed_reps = sa.Table(
    "removed_reps", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("rep_id", sa.String(100), primary_key=True),
    sa.Column("last_version", sa.Integer, nullable=False),
    sa.Column("removed_at", TZ, nullable=False),
)

teams = sa.Table(
    "teams", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("member_ids", sa.JSON, nullable=False),  # ordered: the round-robin order
    sa.Column("lead_rep_id", sa.String(100), nullable=True),
    sa.Column("row_version", sa.Integer, nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

territories = sa.Table(
    "territories", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("countries", sa.JSON, nullable=False),
    sa.Column("regions", sa.JSON, nullable=False),
    sa.Column("postcode_ranges", sa.JSON, nullable=False),
    sa.Column("rep_ids", sa.JSON, nullable=False),
    sa.Column("row_version", sa.Integer, nullable=False),
    sa.Column("created_at", TZ, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

rule_sets = sa.Table(
    "rule_sets", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("rules", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=True),
    sa.Column("created_at", TZ, nullable=False),
)

rotations = sa.Table(
    "rotations", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(500), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("credits", sa.JSON, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)

# This service's projection of leads, fed by events: what rules read at hand-off and re-routing, and
# the source of the open-lead counts per rep.
leads = sa.Table(
    "leads", metadata,
    sa.Column("org_id", sa.String(100), primary_key=True),
    sa.Column("lead_id", sa.String(100), primary_key=True),
    sa.Column("lead_version", sa.Integer, nullable=False),  # subject_version of lead-service events
    sa.Column("pipeline_version", sa.Integer, nullable=False),  # subject_version of pipeline-service events
    sa.Column("out_version", sa.Integer, nullable=False),  # subject_version of our LeadRouted/LeadAssigned
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.Column("open", sa.Boolean, nullable=False),
    sa.Column("owner_id", sa.String(100), nullable=True),
    sa.Column("team_id", sa.String(36), nullable=True),
    sa.Column("territory_id", sa.String(36), nullable=True),
    sa.Column("pipeline_id", sa.String(100), nullable=True),
    sa.Column("rule_id", sa.String(100), nullable=True),
    sa.Column("rule_set_version", sa.Integer, nullable=True),
    sa.Column("routed_at", TZ, nullable=True),
    sa.Column("erased", sa.Boolean, nullable=False),
    sa.Column("updated_at", TZ, nullable=False),
)
sa.Index("ix_leads_owner_open", leads.c.org_id, leads.c.owner_id, leads.c.open)

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("org_id", sa.String(100), nullable=False),
    sa.Column("lead_id", sa.String(100), nullable=False),
    sa.Column("trigger", sa.String(30), nullable=False),
    sa.Column("rule_set_version", sa.Integer, nullable=True),
    sa.Column("rule_id", sa.String(100), nullable=True),
    sa.Column("strategy", sa.String(40), nullable=True),
    sa.Column("pipeline_id", sa.String(100), nullable=True),
    sa.Column("territory_id", sa.String(36), nullable=True),
    sa.Column("owner_id", sa.String(100), nullable=True),
    sa.Column("previous_owner_id", sa.String(100), nullable=True),
    sa.Column("team_id", sa.String(36), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("explanation", sa.JSON, nullable=False),
    sa.Column("source_event_id", sa.String(36), nullable=True),
    sa.Column("decided_by", sa.String(100), nullable=True),
    sa.Column("created_at", TZ, nullable=False),
)
sa.Index("ix_decisions_lead", decisions.c.org_id, decisions.c.lead_id, decisions.c.created_at)
