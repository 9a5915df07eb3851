"""Monthly rollups of leads: by month of creation with their response durations (response time), and by month
of pipeline entry with the highest position reached (funnel).

The projector keeps them on PostgreSQL (adapters/rollups.py), and this revision fills them there from
m_leads; the embedded SQLite mode does not use them.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

KEYS = ("org_id", "month", "owner_id", "team_id", "pipeline_id")


def _keys() -> list[sa.Column]:
    return [sa.Column("org_id", sa.String(100), nullable=False), sa.Column("month", sa.Integer, nullable=False),
            *[sa.Column(c, sa.String(100), nullable=False) for c in KEYS[2:]]]


def upgrade() -> None:
    op.create_table("m_created_months", *_keys(), sa.Column("leads", sa.Integer, nullable=False),
                    sa.Column("durations", sa.JSON().with_variant(postgresql.ARRAY(sa.Float), "postgresql"),
                              nullable=False),
                    sa.PrimaryKeyConstraint(*KEYS))
    op.create_table("m_reach_months", *_keys(), sa.Column("max_position", sa.Integer, nullable=False),
                    sa.Column("leads", sa.Integer, nullable=False), sa.PrimaryKeyConstraint(*KEYS, "max_position"))
    # Filled by revision 0014, which replays the event log into the read models and rollups (the GROUP BY
    # this revision ran reads columns added since).


def downgrade() -> None:
    op.drop_table("m_reach_months")
    op.drop_table("m_created_months")
