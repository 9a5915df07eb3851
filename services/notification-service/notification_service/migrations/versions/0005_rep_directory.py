"""reps: the rep directory as assignment-service publishes it (RepCreated/RepUpdated/RepDeactivated), with the
entry's version so a late (older) event never overwrites a newer entry. Version 0 marks a rep known only from
a lead assignment. leads: the won deal (value, currency, notes) for the customer hand-over message, and what
the Mailchimp lists depend on (stages entered, reopened). mailchimp_rules: a trigger (stage entry or exit, won,
lost, disqualified, reopened). known_pipelines: each pipeline's stages, to check rules against.

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
    # The won deal as LeadWon tells it, for the customer hand-over message.
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("won_value", sa.Numeric(18, 2), nullable=True))
        batch.add_column(sa.Column("won_currency", sa.String(3), nullable=True))
        batch.add_column(sa.Column("won_notes", sa.Text, nullable=True))
        # For the Mailchimp lists that follow the lead's life: the stages it has entered, whether it was reopened.
        batch.add_column(sa.Column("entered_stages", sa.JSON, nullable=True))
        batch.add_column(sa.Column("reopened", sa.Boolean, nullable=False, server_default=sa.false()))
    # Mailchimp rules name a moment of the lead's life (stage entry or exit, an outcome); outcomes have no stage.
    with op.batch_alter_table("mailchimp_rules") as batch:
        batch.add_column(sa.Column("trigger", sa.String(20), nullable=False, server_default="stage_entry"))
        batch.alter_column("stage_id", existing_type=sa.String(100), nullable=True)
    # The stages of each pipeline, as StageAdvanced tells them: what rules are checked against.
    op.create_table(
        "known_pipelines",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("pipeline_id", sa.String(100), nullable=False),
        sa.Column("stage_ids", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "pipeline_id"),
    )


def downgrade() -> None:
    op.drop_table("known_pipelines")
    with op.batch_alter_table("mailchimp_rules") as batch:
        batch.drop_column("trigger")
    with op.batch_alter_table("leads") as batch:
        for column in ("reopened", "entered_stages", "won_notes", "won_currency", "won_value"):
            batch.drop_column(column)
    with op.batch_alter_table("reps") as batch:
        for column in ("language", "working_hours", "team_ids", "active", "version"):
            batch.drop_column(column)
