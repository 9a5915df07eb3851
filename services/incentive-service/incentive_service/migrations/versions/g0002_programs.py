"""Incentive programs: programs and their participants, the facts they score, each lead's close date, points
per fact, tallies, awards and sandbagging flags (adapters/programs_orm.py).

Revision ID: g0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "g0002"
down_revision = "0001"
branch_labels = ("programs",)
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("format", sa.String(20), nullable=False),
        sa.Column("template", sa.String(40), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("hidden", sa.Boolean, nullable=False),
        sa.Column("starts_at", TZ, nullable=False),
        sa.Column("ends_at", TZ, nullable=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("org_id", "program_id"),
    )
    op.create_index("ix_programs_running", "programs", ["status", "ends_at"])
    op.create_table(
        "program_participants",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("participant", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "participant", "program_id"),
    )
    op.create_table(
        "program_facts",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("fact_key", sa.String(120), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("fact", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("org_id", "fact_key"),
    )
    op.create_index("ix_program_facts_lead", "program_facts", ["org_id", "lead_id"])
    op.create_index("ix_program_facts_at", "program_facts", ["org_id", "at"])
    op.create_table(
        "program_leads",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("lead_version", sa.Integer, nullable=False),
        sa.Column("owner_id", sa.String(100), nullable=True),
        sa.Column("expected_close_date", sa.Date, nullable=True),
        sa.PrimaryKeyConstraint("org_id", "lead_id"),
    )
    op.create_table(
        "program_contributions",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.Column("fact_key", sa.String(120), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("participant", sa.String(100), nullable=False),
        sa.Column("behaviour", sa.String(20), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("rule_version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("program_id", "fact_key"),
    )
    op.create_index("ix_program_contributions_lead", "program_contributions", ["program_id", "lead_id"])
    op.create_index("ix_program_contributions_participant", "program_contributions", ["program_id", "participant"])
    op.create_table(
        "program_scores",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.Column("participant", sa.String(100), nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("reached_at", TZ, nullable=True),
        sa.Column("crossings", sa.JSON, nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("program_id", "participant"),
    )
    op.create_index("ix_program_scores_changed", "program_scores", ["program_id", "changed_at"])
    op.create_table(
        "program_awards",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.Column("award_key", sa.String(200), nullable=False),
        sa.Column("participant", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("badge", sa.String(100), nullable=True),
        sa.Column("cash", sa.Numeric(18, 2), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("earned_by", sa.String(120), nullable=True),
        sa.Column("earned_at", TZ, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("program_id", "award_key"),
    )
    op.create_index("ix_program_awards_participant", "program_awards", ["org_id", "participant"])
    op.create_table(
        "program_flags",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("program_id", sa.String(36), nullable=False),
        sa.Column("lead_id", sa.String(100), nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("program_id", "lead_id", "changed_at"),
    )


def downgrade() -> None:
    for table in ("program_flags", "program_awards", "program_scores", "program_contributions", "program_leads",
                  "program_facts", "program_participants", "programs"):
        op.drop_table(table)
