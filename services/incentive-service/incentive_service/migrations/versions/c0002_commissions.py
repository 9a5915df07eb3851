"""Commissions: deals and their outcomes, payees, quotas and rates (copies from events), plans, adjustments,
disputes, statements with their lines, the recalculation queue and the audit log.

Revision ID: c0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "c0002"
down_revision = "0001"
branch_labels = ("commissions",)
depends_on = None


def upgrade() -> None:
    op.create_table('adjustments',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('adjustment_id', sa.String(length=36), nullable=False),
    sa.Column('participant_id', sa.String(length=100), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('author', sa.String(length=100), nullable=False),
    sa.Column('dispute_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'adjustment_id')
    )
    op.create_index('ix_adjustments_participant', 'adjustments', ['org_id', 'participant_id', 'period_start'],
                    unique=False)
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('entity', sa.String(length=30), nullable=False),
    sa.Column('entity_id', sa.String(length=100), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_log_entity', 'audit_log', ['org_id', 'entity', 'entity_id'], unique=False)
    op.create_index('ix_audit_log_org', 'audit_log', ['org_id', 'id'], unique=False)
    op.create_table('deal_outcomes',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('lead_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('owner_id', sa.String(length=100), nullable=True),
    sa.Column('team_id', sa.String(length=100), nullable=True),
    sa.Column('recorded_by', sa.String(length=100), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'event_id')
    )
    op.create_index('ix_deal_outcomes_at', 'deal_outcomes', ['org_id', 'kind', 'at'], unique=False)
    op.create_index('ix_deal_outcomes_lead', 'deal_outcomes', ['org_id', 'lead_id', 'at'], unique=False)
    op.create_index('ix_deal_outcomes_owner', 'deal_outcomes', ['org_id', 'owner_id', 'at'], unique=False)
    op.create_table('deals',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('lead_id', sa.String(length=100), nullable=False),
    sa.Column('lead_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('product_line', sa.String(length=100), nullable=True),
    sa.Column('company_key', sa.String(length=300), nullable=True),
    sa.Column('value', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('owner_id', sa.String(length=100), nullable=True),
    sa.Column('team_id', sa.String(length=100), nullable=True),
    sa.Column('assigned_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'lead_id')
    )
    op.create_table('disputes',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('dispute_id', sa.String(length=36), nullable=False),
    sa.Column('statement_id', sa.String(length=36), nullable=False),
    sa.Column('line_id', sa.String(length=36), nullable=False),
    sa.Column('participant_id', sa.String(length=100), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('opened_by', sa.String(length=100), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.String(length=100), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('adjustment_id', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'dispute_id')
    )
    op.create_index('ix_disputes_participant', 'disputes', ['org_id', 'participant_id', 'status'], unique=False)
    op.create_index('ix_disputes_statement', 'disputes', ['org_id', 'statement_id'], unique=False)
    op.create_table('exchange_rates',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('base_currency', sa.String(length=3), nullable=False),
    sa.Column('quote_currency', sa.String(length=3), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('rate', sa.Numeric(precision=20, scale=8), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'base_currency', 'quote_currency', 'valid_from')
    )
    op.create_table('org_currency',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('reporting_currency', sa.String(length=3), nullable=False),
    sa.PrimaryKeyConstraint('org_id')
    )
    op.create_table('payees',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('participant_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('team_ids', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('directory_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('role', sa.String(length=100), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'participant_id')
    )
    op.create_table('plans',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('plan_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('effective_to', sa.Date(), nullable=True),
    sa.Column('retired', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'plan_id', 'version')
    )
    op.create_table('quotas',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('quota_id', sa.String(length=36), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('scope_id', sa.String(length=100), nullable=False),
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('removed', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'quota_id')
    )
    op.create_index('ix_quotas_scope', 'quotas', ['org_id', 'scope', 'scope_id', 'period_start'], unique=False)
    op.create_table('recalculation_queue',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('subject_kind', sa.String(length=12), nullable=False),
    sa.Column('subject_id', sa.String(length=100), nullable=False),
    sa.Column('on_date', sa.Date(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'subject_kind', 'subject_id', 'on_date')
    )
    op.create_table('statement_lines',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('line_id', sa.String(length=36), nullable=False),
    sa.Column('statement_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('lead_id', sa.String(length=100), nullable=True),
    sa.Column('plan_id', sa.String(length=36), nullable=True),
    sa.Column('plan_version', sa.Integer(), nullable=True),
    sa.Column('rule', sa.String(length=200), nullable=True),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('steps', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('author', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'line_id')
    )
    op.create_index('ix_statement_lines_statement', 'statement_lines', ['org_id', 'statement_id', 'seq'], unique=False)
    op.create_table('statements',
    sa.Column('org_id', sa.String(length=100), nullable=False),
    sa.Column('statement_id', sa.String(length=36), nullable=False),
    sa.Column('participant_id', sa.String(length=100), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('plan_currency', sa.String(length=3), nullable=False),
    sa.Column('total', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('payout_currency', sa.String(length=3), nullable=False),
    sa.Column('payout', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reviewed_by', sa.String(length=100), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approved_by', sa.String(length=100), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_by', sa.String(length=100), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payment_reference', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'statement_id'),
    sa.UniqueConstraint('org_id', 'participant_id', 'period_start', 'version', name='uq_statement_version')
    )
    op.create_index('ix_statements_period', 'statements', ['org_id', 'period_start', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_statements_period', table_name='statements')
    op.drop_table('statements')
    op.drop_index('ix_statement_lines_statement', table_name='statement_lines')
    op.drop_table('statement_lines')
    op.drop_table('recalculation_queue')
    op.drop_index('ix_quotas_scope', table_name='quotas')
    op.drop_table('quotas')
    op.drop_table('plans')
    op.drop_table('payees')
    op.drop_table('org_currency')
    op.drop_table('exchange_rates')
    op.drop_index('ix_disputes_statement', table_name='disputes')
    op.drop_index('ix_disputes_participant', table_name='disputes')
    op.drop_table('disputes')
    op.drop_table('deals')
    op.drop_index('ix_deal_outcomes_owner', table_name='deal_outcomes')
    op.drop_index('ix_deal_outcomes_lead', table_name='deal_outcomes')
    op.drop_index('ix_deal_outcomes_at', table_name='deal_outcomes')
    op.drop_table('deal_outcomes')
    op.drop_index('ix_audit_log_org', table_name='audit_log')
    op.drop_index('ix_audit_log_entity', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index('ix_adjustments_participant', table_name='adjustments')
    op.drop_table('adjustments')
