"""Publish the definition (PipelineDefined) of every pipeline that existed before pipeline-service published
them, through the outbox, so notification-service knows them too (it checks Mailchimp rules against them). Later
changes publish their own.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from salesflow_shared.events import PipelineDefinedV1, PipelineStageRef, make_event
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.uow import outbox_row

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    pipelines = sa.table("pipelines", sa.column("id"), sa.column("org_id"), sa.column("name"),
                         sa.column("archived"), sa.column("version"))
    stages = sa.table("stages", sa.column("id"), sa.column("org_id"), sa.column("pipeline_id"), sa.column("name"),
                      sa.column("position"), sa.column("deleted"))
    rows = []
    for pipeline in connection.execute(sa.select(pipelines).order_by(pipelines.c.org_id, pipelines.c.id)):
        seq = connection.execute(sa.select(stages.c.id, stages.c.name).where(
            stages.c.org_id == pipeline.org_id, stages.c.pipeline_id == pipeline.id,
            stages.c.deleted.is_(False)).order_by(stages.c.position))
        definition = PipelineDefinedV1(pipeline_id=pipeline.id, name=pipeline.name, archived=bool(pipeline.archived),
                                       stages=[PipelineStageRef(stage_id=s.id, name=s.name) for s in seq])
        rows.append(outbox_row(make_event(definition, org_id=pipeline.org_id, subject_id=pipeline.id,
                                          subject_version=pipeline.version), None))
    if rows:
        connection.execute(sa.insert(outbox_table), rows)


def downgrade() -> None:
    pass  # published events are not taken back
