"""Outbox, inbox and idempotency keys (the shapes every service shares).

Revision ID: 0001
Revises:
"""
from alembic import op

from salesflow_shared.infra_tables import create_infrastructure_tables, drop_infrastructure_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_infrastructure_tables(op)


def downgrade() -> None:
    drop_infrastructure_tables(op)
