"""business_calendars: each org's working weekdays, holiday country/subdivision and own days off.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "business_calendars",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("working_days", sa.JSON, nullable=False),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("subdivision", sa.String(10), nullable=True),
        sa.Column("days_off", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("business_calendars")
