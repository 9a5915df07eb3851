"""known_pipelines from pipeline-service's PipelineDefined: the definition's version (0: known only from a lead's
StageAdvanced), whether the pipeline is archived, and its name, so Mailchimp rules naming an unknown pipeline or
stage are refused.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("known_pipelines") as batch:
        batch.add_column(sa.Column("definition_version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("known_pipelines") as batch:
        batch.drop_column("name")
        batch.drop_column("archived")
        batch.drop_column("definition_version")
