"""lead_past_owners: the reps that owned a lead before its current owner (they keep read access); the last
failed enrichment attempt of a lead (when, why), so an admin can run enrichment again for an outage's leads.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from salesflow_shared.ownership import create_past_owners_table, drop_past_owners_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_past_owners_table(op)
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("enrichment_failed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("enrichment_error", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("enrichment_error")
        batch.drop_column("enrichment_failed_at")
    drop_past_owners_table(op)
