"""The org's reporting currency and its dated exchange rates (admins set them; reports convert with them), and
the creation time of tasks (m_tasks.created_ts: a stay is judged by the tasks of that visit alone). The log is
replayed by revision 0014, which fills it.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("m_tasks", sa.Column("created_ts", sa.Float, nullable=True))
    op.create_table(
        "org_currency",
        sa.Column("org_id", sa.String(100), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "exchange_rates",
        sa.Column("org_id", sa.String(100), nullable=False),
        sa.Column("base_currency", sa.String(3), nullable=False),
        sa.Column("quote_currency", sa.String(3), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("rate", sa.Numeric(24, 10), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "base_currency", "quote_currency", "valid_from"),
    )


def downgrade() -> None:
    op.drop_column("m_tasks", "created_ts")
    op.drop_table("exchange_rates")
    op.drop_table("org_currency")
