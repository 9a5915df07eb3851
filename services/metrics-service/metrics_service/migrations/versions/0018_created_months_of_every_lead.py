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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from metrics_service.service_layer.rollups import fill_lead_sql

        op.execute("DELETE FROM m_created_months")
        op.execute(fill_lead_sql("")[0])  # m_created_months' statement


def downgrade() -> None:
    op.execute("DELETE FROM m_created_months WHERE owner_id = ''")
