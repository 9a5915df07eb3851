"""Directory (reps, teams, territories), versioned rule sets, rotations, lead projection, decisions.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _stamps() -> list[sa.Column]:
    return [sa.Column("created_at", TZ, nullable=False), sa.Column("updated_at", TZ, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "reps",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(100), primary_key=True),
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
        *_stamps(),
    )
    op.create_table(
        "teams",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("member_ids", sa.JSON, nullable=False),
        sa.Column("lead_rep_id", sa.String(100), nullable=True),
        sa.Column("row_version", sa.Integer, nullable=False),
        *_stamps(),
    )
    op.create_table(
        "territories",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("countries", sa.JSON, nullable=False),
        sa.Column("regions", sa.JSON, nullable=False),
        sa.Column("postcode_ranges", sa.JSON, nullable=False),
        sa.Column("rep_ids", sa.JSON, nullable=False),
        sa.Column("row_version", sa.Integer, nullable=False),
        *_stamps(),
    )
    op.create_table(
        "rule_sets",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("rules", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "rotations",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(500), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("credits", sa.JSON, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "leads",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("lead_id", sa.String(100), primary_key=True),
        sa.Column("lead_version", sa.Integer, nullable=False),
        sa.Column("pipeline_version", sa.Integer, nullable=False),
        sa.Column("out_version", sa.Integer, nullable=False),
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
    op.create_index("ix_leads_owner_open", "leads", ["org_id", "owner_id", "open"])
    op.create_table(
        "decisions",
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
    op.create_index("ix_decisions_lead", "decisions", ["org_id", "lead_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_decisions_lead", table_name="decisions")
    op.drop_table("decisions")
    op.drop_index("ix_leads_owner_open", table_name="leads")
    for name in ("leads", "rotations", "rule_sets", "territories", "teams", "reps"):
        op.drop_table(name)
