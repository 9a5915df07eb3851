"""Copies of the lead's owner, team, pipeline and pipeline-entry time on its timeline rows.

The stay-based reports (funnel, coaching, stalled deals, compliance) then filter and group the stays alone,
through an index on the period column, instead of joining every stay with its lead. The projector keeps the
copies in step whenever a lead's owner or timeline changes (and a rebuild recomputes them).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = (("owner_id", sa.String(100)), ("team_id", sa.String(100)), ("lead_pipeline_id", sa.String(100)),
           ("cohort_ts", sa.Float))


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("m_timeline", sa.Column(name, type_, nullable=True))
    op.create_index("ix_m_timeline_cohort", "m_timeline", ["org_id", "cohort_ts"])


def downgrade() -> None:
    op.drop_index("ix_m_timeline_cohort", table_name="m_timeline")
    for name, _ in reversed(COLUMNS):
        op.drop_column("m_timeline", name)
