"""Won values per month as sorted arrays, for the exact median deal size.

m_won_months: per UTC month of the win, owner, team, pipeline and currency: deals and the won values (LeadWon's,
else the lead's). The projector keeps it on PostgreSQL (adapters/rollups.py), and this revision fills it
there from m_leads; the embedded SQLite mode does not use it.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEYS = ("org_id", "month", "owner_id", "team_id", "pipeline_id")


def upgrade() -> None:
    op.create_table("m_won_months", sa.Column("org_id", sa.String(100), nullable=False),
                    sa.Column("month", sa.Integer, nullable=False),
                    *[sa.Column(c, sa.String(100), nullable=False) for c in KEYS[2:]],
                    sa.Column("currency", sa.String(3), nullable=False),
                    sa.Column("deals", sa.Integer, nullable=False),
                    sa.Column("won_values", sa.JSON().with_variant(postgresql.ARRAY(sa.Numeric(18, 2)), "postgresql"),
                              nullable=False),
                    sa.PrimaryKeyConstraint(*KEYS, "currency"))
    # Filled by revision 0014, which replays the event log into the read models and rollups (the GROUP BY
    # this revision ran reads columns added since).


def downgrade() -> None:
    op.drop_table("m_won_months")
