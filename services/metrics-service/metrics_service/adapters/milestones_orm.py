"""quota_milestones: the quotas found reached, one row each (migration 0012).

Kept apart from the read models (orm.py's READ_MODELS): a rebuild must not forget which quotas were already
announced, or it would announce them again.
"""
import sqlalchemy as sa

from .orm import MONEY, ORG, metadata

quota_milestones = sa.Table(
    "quota_milestones", metadata,
    sa.Column("org_id", ORG, primary_key=True),
    sa.Column("quota_id", sa.String(36), primary_key=True),
    sa.Column("attained", MONEY, nullable=False),
    sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
)
