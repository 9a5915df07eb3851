"""Monthly rollups the reports sum instead of counting a period's leads or stays.

m_closed_months: closed leads per UTC month of closing, owner, team, pipeline and outcome (count and value);
m_exit_months: stage exits per UTC month of exit, owner, team and pipeline (all and compliant). The
projector keeps them on PostgreSQL (adapters/rollups.py); this revision fills them from the read models
already there.

Revision ID: 0008
Revises: 0007
"""
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEYS: list[sa.Column[Any]] = [
    sa.Column("org_id", sa.String(100), nullable=False), sa.Column("month", sa.Integer, nullable=False),
    sa.Column("owner_id", sa.String(100), nullable=False), sa.Column("team_id", sa.String(100), nullable=False),
    sa.Column("pipeline_id", sa.String(100), nullable=False)]
KEY_NAMES = [c.name for c in KEYS]


def upgrade() -> None:
    op.create_table("m_closed_months", *[c._copy() for c in KEYS],
                    sa.Column("outcome", sa.String(20), nullable=False),
                    sa.Column("leads", sa.Integer, nullable=False),
                    sa.Column("value", sa.Numeric(18, 2), nullable=False),
                    sa.PrimaryKeyConstraint(*KEY_NAMES, "outcome"))
    op.create_table("m_exit_months", *[c._copy() for c in KEYS],
                    sa.Column("exits", sa.Integer, nullable=False),
                    sa.Column("compliant", sa.Integer, nullable=False),
                    sa.PrimaryKeyConstraint(*KEY_NAMES))
    # Filled by revision 0014, which replays the event log into the read models and rollups (the GROUP BY
    # this revision ran reads columns added since).


def downgrade() -> None:
    op.drop_table("m_exit_months")
    op.drop_table("m_closed_months")
