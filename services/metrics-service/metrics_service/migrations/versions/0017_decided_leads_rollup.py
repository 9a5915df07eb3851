"""Leads won or lost per month, for the sales-cycle report: m_decided_months, per UTC month of the close, the
owner and team credited with it, pipeline and outcome: count, the sales cycles (closed_ts − created_ts of the
wins) and the ask-to-decision durations (closed_ts − ask_entered_ts), packed ascending like the other duration
rollups. The report read every close of the period from m_leads twice (~110,000 index entries a quarter at 1M
leads) and sorted them in the database; whole months now read some 2,000 rollup rows.

The projector keeps it on PostgreSQL (adapters/rollups.py), and this revision fills it there from m_leads
(the read models are up to date since revision 0014's replay); the embedded SQLite mode does not use it.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

KEYS = ("org_id", "month", "owner_id", "team_id", "pipeline_id")
# rollups.fill_decided_sql("") as of this revision (the month of the close as periods.month_number; the durations
# ascending big-endian doubles as rollups.pack writes them)
MONTH = "(to_timestamp(floor(closed_ts)) AT TIME ZONE 'UTC')"
CYCLE, ASK = "closed_ts - created_ts", "closed_ts - ask_entered_ts"
FILL = f"""
INSERT INTO m_decided_months (org_id, month, owner_id, team_id, pipeline_id, outcome, leads, cycle_durations,
                              ask_durations)
SELECT org_id, CAST(EXTRACT(YEAR FROM {MONTH}) * 12 + EXTRACT(MONTH FROM {MONTH}) - 1 AS INTEGER),
       COALESCE(credit_owner_id, ''), COALESCE(credit_team_id, ''), COALESCE(pipeline_id, ''), outcome, COUNT(*),
       COALESCE(string_agg(float8send({CYCLE}), ''::bytea ORDER BY {CYCLE})
                FILTER (WHERE outcome = 'won' AND created_ts IS NOT NULL), ''::bytea),
       COALESCE(string_agg(float8send({ASK}), ''::bytea ORDER BY {ASK}) FILTER (WHERE ask_entered_ts IS NOT NULL),
                ''::bytea)
FROM m_leads WHERE outcome IN ('won', 'lost') AND closed_ts IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6"""


def upgrade() -> None:
    op.create_table("m_decided_months", sa.Column("org_id", sa.String(100), nullable=False),
                    sa.Column("month", sa.Integer, nullable=False),
                    *[sa.Column(c, sa.String(100), nullable=False) for c in KEYS[2:]],
                    sa.Column("outcome", sa.String(20), nullable=False),
                    sa.Column("leads", sa.Integer, nullable=False),
                    sa.Column("cycle_durations", sa.LargeBinary, nullable=False),
                    sa.Column("ask_durations", sa.LargeBinary, nullable=False),
                    sa.PrimaryKeyConstraint(*KEYS, "outcome"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FILL)


def downgrade() -> None:
    op.drop_table("m_decided_months")
