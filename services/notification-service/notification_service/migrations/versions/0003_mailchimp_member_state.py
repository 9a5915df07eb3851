"""mailchimp_members remembers how a lead was subscribed (tags, merge-field mapping, status_if_new) and whether
it still is, so a changed email address can be moved to the new member with the same list and tags.

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
    with op.batch_alter_table("mailchimp_members") as batch:
        batch.add_column(sa.Column("subscribed", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("tags", sa.JSON, nullable=True))
        batch.add_column(sa.Column("merge_fields", sa.JSON, nullable=True))
        batch.add_column(sa.Column("status_if_new", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailchimp_members") as batch:
        for column in ("status_if_new", "merge_fields", "tags", "subscribed"):
            batch.drop_column(column)
