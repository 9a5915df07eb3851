"""The hand-overs report's own index: won leads whose current owner is not the rep credited with the win (a
third of the wins in the bench's orgs), by close time, with the columns the report reads. Without it the report
read every close of the period from ix_m_leads_closed_cover (~110,000 index entries a quarter at 1M leads) to
keep ~12,000. An index only: nothing to fill, the read models are unchanged.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# as in adapters/orm.py; the condition is the report's own (reports.handovers), so the planner can prove it
HANDED_OVER = "outcome = 'won' AND owner_id <> COALESCE(credit_owner_id, '')"


def upgrade() -> None:
    op.create_index("ix_m_leads_handed_over", "m_leads", ["org_id", "closed_ts"], postgresql_include=[
        "owner_id", "team_id", "credit_owner_id", "won_value", "value", "won_currency", "currency", "pipeline_id"],
                    postgresql_where=sa.text(HANDED_OVER), sqlite_where=sa.text(HANDED_OVER))


def downgrade() -> None:
    op.drop_index("ix_m_leads_handed_over", table_name="m_leads")
