"""The last version published for each removed rep, so a rep re-created with the same id continues from it.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "removed_reps",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("rep_id", sa.String(100), primary_key=True),
        sa.Column("last_version", sa.Integer, nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("removed_reps")
