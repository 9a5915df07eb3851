"""Pipelines that existed before pipeline-service published PipelineDefined get theirs once, from the migration
that introduced it, so notification-service can check Mailchimp rules against them too."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import pipeline_service
from salesflow_shared.db import Database
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.migrations import run_migrations

MIGRATIONS = Path(pipeline_service.__file__).parent / "migrations"


def upgrade_to(revision: str):
    def upgrade(connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return upgrade


async def test_existing_pipelines_are_published_once_by_the_upgrade(database_url):
    database = Database(database_url, pool_size=2)
    try:
        async with database.engine.begin() as connection:  # the schema as it was before PipelineDefined
            await connection.run_sync(upgrade_to("0006"))
        now = datetime.now(UTC)
        async with database.engine.begin() as connection:
            for pipeline_id, org, archived, version in (("p-live", "org-a", False, 3), ("p-old", "org-b", True, 7)):
                await connection.execute(sa.text(
                    "INSERT INTO pipelines (id, org_id, name, lost_reasons, archived, version, created_at, updated_at)"
                    " VALUES (:id, :org, :name, '[]', :archived, :version, :now, :now)"),
                    {"id": pipeline_id, "org": org, "name": f"Pipeline {pipeline_id}", "archived": archived,
                     "version": version, "now": now})
            for stage_id, pipeline_id, org, position, deleted in (
                    ("s2", "p-live", "org-a", 2, False), ("s1", "p-live", "org-a", 1, False),
                    ("s-gone", "p-live", "org-a", 3, True), ("s9", "p-old", "org-b", 1, False)):
                await connection.execute(sa.text(
                    "INSERT INTO stages (id, org_id, pipeline_id, name, position, task_templates, deleted, created_at)"
                    " VALUES (:id, :org, :pipeline, :name, :position, '[]', :deleted, :now)"),
                    {"id": stage_id, "org": org, "pipeline": pipeline_id, "name": stage_id.upper(),
                     "position": position, "deleted": deleted, "now": now})

        await run_migrations(database, MIGRATIONS, "pipeline-service")
        await run_migrations(database, MIGRATIONS, "pipeline-service")  # already at head: nothing published again

        async with database.engine.connect() as connection:
            rows = (await connection.execute(sa.select(outbox_table.c.event_type, outbox_table.c.org_id,
                                                       outbox_table.c.payload).order_by(outbox_table.c.id))).all()
        published = [(t, org, json.loads(p)) for t, org, p in rows]
        assert [(t, org, e["subject_id"], e["subject_version"], e["data"]["archived"],
                 [(s["stage_id"], s["name"]) for s in e["data"]["stages"]]) for t, org, e in published] == [
            ("PipelineDefined", "org-a", "p-live", 3, False, [("s1", "S1"), ("s2", "S2")]),
            ("PipelineDefined", "org-b", "p-old", 7, True, [("s9", "S9")]),
        ]
    finally:
        await database.dispose()
