"""Monthly rollups of ended stays with their durations as sorted arrays (medians and percentiles).

m_stay_months: per UTC month of stage entry, owner, team, the lead's pipeline and the stage: stays, converted
and durations (coaching, stalled deals). m_cohort_months: per UTC month of the lead's pipeline entry, owner,
team, pipeline and stage of that pipeline: stays, leads lost or disqualified in it and durations (funnel).
The projector keeps them on PostgreSQL (adapters/rollups.py), and this revision fills them there from
m_timeline; the embedded SQLite mode does not use them.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KEYS = ("org_id", "month", "owner_id", "team_id", "pipeline_id")


def _keys() -> list[sa.Column]:
    return [sa.Column("org_id", sa.String(100), nullable=False), sa.Column("month", sa.Integer, nullable=False),
            *[sa.Column(c, sa.String(100), nullable=False) for c in KEYS[2:]]]


def _durations() -> sa.Column:
    return sa.Column("durations", sa.JSON().with_variant(postgresql.ARRAY(sa.Float), "postgresql"), nullable=False)


def upgrade() -> None:
    op.create_table("m_stay_months", *_keys(), sa.Column("stage_pipeline_id", sa.String(100), nullable=False),
                    sa.Column("stage_id", sa.String(100), nullable=False),
                    sa.Column("position", sa.Integer, nullable=False), sa.Column("stays", sa.Integer, nullable=False),
                    sa.Column("converted", sa.Integer, nullable=False), _durations(),
                    sa.PrimaryKeyConstraint(*KEYS, "stage_pipeline_id", "stage_id", "position"))
    op.create_table("m_cohort_months", *_keys(), sa.Column("stage_id", sa.String(100), nullable=False),
                    sa.Column("stays", sa.Integer, nullable=False),
                    sa.Column("dropped_leads", sa.Integer, nullable=False), _durations(),
                    sa.PrimaryKeyConstraint(*KEYS, "stage_id"))
    # Filled by revision 0014, which replays the event log into the read models and rollups (the GROUP BY
    # this revision ran reads columns added since).


def downgrade() -> None:
    op.drop_table("m_cohort_months")
    op.drop_table("m_stay_months")
