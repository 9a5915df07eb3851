"""notification-service's own tables: templates, lead and rep projections, sequences and their schedule
(enrollments), the delivery log (idempotency key + state machine), Mailchimp settings, rules and memberships,
milestone rules and webhook subscriptions.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("webhook_subscriptions", "milestone_rules", "mailchimp_members", "mailchimp_rules", "mailchimp_accounts",
          "deliveries", "enrollments", "sequences", "reps", "leads", "templates")


def upgrade() -> None:
    op.create_table('templates',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=True),
    sa.Column('audience', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('html_body', sa.Text(), nullable=False),
    sa.Column('text_body', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'key', name='uq_templates_org_key')
    )
    op.create_table('leads',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('lead_id', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('company', sa.String(length=300), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=100), nullable=True),
    sa.Column('country', sa.String(length=100), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=20), nullable=True),
    sa.Column('product_line', sa.String(length=100), nullable=True),
    sa.Column('value', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('form_id', sa.String(length=100), nullable=True),
    sa.Column('custom_fields', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=True),
    sa.Column('owner_id', sa.String(length=100), nullable=True),
    sa.Column('lead_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('pipeline_id', sa.String(length=100), nullable=True),
    sa.Column('stage_id', sa.String(length=100), nullable=True),
    sa.Column('stage_name', sa.String(length=200), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('pipeline_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('unsubscribed', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('erased', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'lead_id')
    )
    op.create_table('reps',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('rep_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'rep_id')
    )
    op.create_table('sequences',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('trigger', sa.String(length=30), nullable=False),
    sa.Column('pipeline_id', sa.String(length=100), nullable=True),
    sa.Column('stage_id', sa.String(length=100), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('business_timezone', sa.String(length=64), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('enrollments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('sequence_id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=100), nullable=False),
    sa.Column('trigger_key', sa.String(length=300), nullable=False),
    sa.Column('stage_id', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('stop_reason', sa.String(length=50), nullable=True),
    sa.Column('next_step', sa.Integer(), nullable=False),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'sequence_id', 'lead_id', 'trigger_key', name='uq_enrollments_trigger')
    )
    op.create_table('deliveries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('idem_key', sa.String(length=400), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('recipient_kind', sa.String(length=20), nullable=False),
    sa.Column('recipient', sa.String(length=400), nullable=True),
    sa.Column('lead_id', sa.String(length=100), nullable=True),
    sa.Column('rep_id', sa.String(length=100), nullable=True),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('sequence_id', sa.String(length=36), nullable=True),
    sa.Column('enrollment_id', sa.String(length=36), nullable=True),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('template_id', sa.String(length=36), nullable=True),
    sa.Column('rule_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('message_id', sa.String(length=300), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'idem_key', name='uq_deliveries_idem_key')
    )
    op.create_table('mailchimp_accounts',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('api_key', sa.String(length=200), nullable=False),
    sa.Column('nurture_list_id', sa.String(length=100), nullable=True),
    sa.Column('nurture_tag', sa.String(length=100), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id')
    )
    op.create_table('mailchimp_rules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('pipeline_id', sa.String(length=100), nullable=True),
    sa.Column('stage_id', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('list_id', sa.String(length=100), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('merge_fields', sa.JSON(), nullable=False),
    sa.Column('status_if_new', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('mailchimp_members',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('lead_id', sa.String(length=100), nullable=False),
    sa.Column('list_id', sa.String(length=100), nullable=False),
    sa.Column('subscriber_hash', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'lead_id', 'list_id')
    )
    op.create_table('milestone_rules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('stage_id', sa.String(length=100), nullable=True),
    sa.Column('min_value', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('webhook_subscriptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('rep_id', sa.String(length=100), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sequences_org_trigger', 'sequences', ['org_id', 'trigger'], unique=False)
    op.create_index('ix_enrollments_due', 'enrollments', ['status', 'next_due_at'], unique=False)
    op.create_index('ix_enrollments_lead', 'enrollments', ['org_id', 'lead_id'], unique=False)
    op.create_index('ix_deliveries_lead', 'deliveries', ['org_id', 'lead_id', 'created_at'], unique=False)
    op.create_index('ix_deliveries_due', 'deliveries', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_mailchimp_rules_stage', 'mailchimp_rules', ['org_id', 'stage_id'], unique=False)


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
