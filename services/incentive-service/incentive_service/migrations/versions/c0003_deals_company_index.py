"""Deals by company: finding a company's first win (new-logo SPIFFs) reads an index, not every deal.

Revision ID: c0003
Revises: c0002
"""
from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deals_company", "deals", ["org_id", "company_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deals_company", table_name="deals")
