"""m_created_months counts every lead created, those nobody owned at creation as owner '' (they were left out):
production's leads generated reads whole months from it instead of every lead created in the period from
m_leads (~125,000 index entries a quarter at 1M leads); response time leaves the '' owner out, as before.

PostgreSQL: the rollup is computed again from m_leads (the embedded SQLite mode does not keep it).

Revision ID: 0018
Revises: 0017
"""
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# m_created_months' statement of rollups.fill_lead_sql("") as of this revision (the month as periods.month_number,
# the durations ascending big-endian doubles as rollups.pack writes them)
MONTH = "(to_timestamp(floor(created_ts)) AT TIME ZONE 'UTC')"
RESPONSE = "first_owner_activity_ts - created_ts"
FILL = f"""
INSERT INTO m_created_months (org_id, month, owner_id, team_id, pipeline_id, leads, durations)
SELECT org_id, CAST(EXTRACT(YEAR FROM {MONTH}) * 12 + EXTRACT(MONTH FROM {MONTH}) - 1 AS INTEGER),
       COALESCE(first_owner_id, ''), COALESCE(first_team_id, ''), COALESCE(pipeline_id, ''), COUNT(*),
       COALESCE(string_agg(float8send({RESPONSE}), ''::bytea ORDER BY {RESPONSE})
                FILTER (WHERE first_owner_activity_ts IS NOT NULL), ''::bytea)
FROM m_leads WHERE created_ts IS NOT NULL GROUP BY 1, 2, 3, 4, 5"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DELETE FROM m_created_months")
        op.execute(FILL)


def downgrade() -> None:
    op.execute("DELETE FROM m_created_months WHERE owner_id = ''")
