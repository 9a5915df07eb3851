"""Leads, contacts, companies, activities, forms and submissions, scoring rules, custom fields, imports.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('activities',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('lead_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('rep_id', sa.String(length=100), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_seconds', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=100), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'external_id', name='uq_activities_external')
    )
    op.create_index('ix_activities_lead', 'activities', ['org_id', 'lead_id', 'occurred_at'], unique=False)
    op.create_table('companies',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('dedup_key', sa.String(length=300), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('domain', sa.String(length=253), nullable=True),
    sa.Column('size', sa.String(length=50), nullable=True),
    sa.Column('industry', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'dedup_key', name='uq_companies_org_key')
    )
    op.create_table('contacts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=100), nullable=True),
    sa.Column('last_name', sa.String(length=100), nullable=True),
    sa.Column('phone', sa.String(length=50), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('company_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'email', name='uq_contacts_org_email')
    )
    op.create_table('custom_field_defs',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('key', sa.String(length=63), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'key')
    )
    op.create_table('forms',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('defaults', sa.JSON(), nullable=False),
    sa.Column('required', sa.JSON(), nullable=False),
    sa.Column('public_key', sa.String(length=64), nullable=False),
    sa.Column('signing_secret', sa.String(length=128), nullable=False),
    sa.Column('honeypot_field', sa.String(length=100), nullable=False),
    sa.Column('redirect_url', sa.Text(), nullable=True),
    sa.Column('rate_limit_per_minute', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('public_key')
    )
    op.create_table('import_rows',
    sa.Column('import_id', sa.String(length=36), nullable=False),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=True),
    sa.Column('lead_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('import_id', 'row_number')
    )
    op.create_index('ix_import_rows_status', 'import_rows', ['import_id', 'status', 'row_number'], unique=False)
    op.create_table('imports',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('filename', sa.String(length=300), nullable=True),
    sa.Column('form_id', sa.String(length=36), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('total_rows', sa.Integer(), server_default='0', nullable=False),
    sa.Column('processed_rows', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failed_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_imports_status', 'imports', ['status'], unique=False)
    op.create_table('leads',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('contact_id', sa.String(length=36), nullable=True),
    sa.Column('company_id', sa.String(length=36), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('search_text', sa.Text(), server_default='', nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('postcode', sa.String(length=20), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('product_line', sa.String(length=100), nullable=True),
    sa.Column('value', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('expected_close_date', sa.Date(), nullable=True),
    sa.Column('source', sa.String(length=50), nullable=False),
    sa.Column('utm', sa.JSON(), nullable=False),
    sa.Column('custom_fields', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('disqualify_reason', sa.Text(), nullable=True),
    sa.Column('owner_id', sa.String(length=100), nullable=True),
    sa.Column('team_id', sa.String(length=100), nullable=True),
    sa.Column('score', sa.Integer(), server_default='0', nullable=False),
    sa.Column('score_breakdown', sa.JSON(), nullable=False),
    sa.Column('form_id', sa.String(length=36), nullable=True),
    sa.Column('import_id', sa.String(length=36), nullable=True),
    sa.Column('enrichment', sa.JSON(), nullable=False),
    sa.Column('enrichment_status', sa.String(length=20), server_default='none', nullable=False),
    sa.Column('enrichment_attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('enrichment_next_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('assignment_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('outcome_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_leads_enrichment_due', 'leads', ['enrichment_status', 'enrichment_next_at'], unique=False)
    op.create_index('ix_leads_org_created', 'leads', ['org_id', 'created_at', 'id'], unique=False)
    op.create_index('ix_leads_org_email', 'leads', ['org_id', 'email'], unique=False)
    op.create_table('scoring_rules',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_scoring_rules_org', 'scoring_rules', ['org_id'], unique=False)
    op.create_table('submissions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('form_id', sa.String(length=36), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('raw_body', sa.Text(), nullable=False),
    sa.Column('remote_ip', sa.String(length=64), nullable=True),
    sa.Column('dedup_key', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=True),
    sa.Column('lead_id', sa.String(length=36), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id', 'form_id', 'dedup_key', name='uq_submissions_dedup')
    )
    op.create_index('ix_submissions_form_status', 'submissions', ['org_id', 'form_id', 'status', 'received_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_submissions_form_status', table_name='submissions')
    op.drop_table('submissions')
    op.drop_index('ix_scoring_rules_org', table_name='scoring_rules')
    op.drop_table('scoring_rules')
    op.drop_index('ix_leads_org_email', table_name='leads')
    op.drop_index('ix_leads_org_created', table_name='leads')
    op.drop_index('ix_leads_enrichment_due', table_name='leads')
    op.drop_table('leads')
    op.drop_index('ix_imports_status', table_name='imports')
    op.drop_table('imports')
    op.drop_index('ix_import_rows_status', table_name='import_rows')
    op.drop_table('import_rows')
    op.drop_table('forms')
    op.drop_table('custom_field_defs')
    op.drop_table('contacts')
    op.drop_table('companies')
    op.drop_index('ix_activities_lead', table_name='activities')
    op.drop_table('activities')
