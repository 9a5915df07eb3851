"""Outbox, inbox and idempotency keys (the shapes every service shares).

Revision ID: 0001
Revises:

This service's migrations form two branches from here, so the two parts of the service can grow their schemas
independently: commissions (revisions c0002, c0003, ... branch label "commissions") and incentive programs
(revisions g0002, g0003, ... branch label "programs"). `salesflow migrate` upgrades to all heads.
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
