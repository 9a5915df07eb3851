"""reps: the rep directory as assignment-service publishes it (RepCreated/RepUpdated/RepDeactivated), with the
entry's version so a late (older) event never overwrites a newer entry. Version 0 marks a rep known only from
a lead assignment.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reps") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("team_ids", sa.JSON, nullable=True))
        batch.add_column(sa.Column("working_hours", sa.JSON, nullable=True))
        batch.add_column(sa.Column("language", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reps") as batch:
        for column in ("language", "working_hours", "team_ids", "active", "version"):
            batch.drop_column(column)
