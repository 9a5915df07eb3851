"""Alembic, run programmatically: by the pre-start step (`salesflow migrate`) or on start-up.

Each service's `migrations/env.py` is three lines that call `run_alembic_env(metadata)`; the connection
is handed in through the Alembic config, so the same code migrates PostgreSQL and SQLite. On PostgreSQL
an advisory lock serialises replicas that start together.
"""
from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from .db import Database


def _alembic_config(script_location: Path, connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


# Alembic keeps its environment in module globals; the embedded mode migrates five databases from one
# event loop, so migrations in one process run one at a time.
_MIGRATION_LOCK = asyncio.Lock()


async def run_migrations(database: Database, script_location: Path, service_name: str) -> None:
    def _upgrade(sync_connection: Any) -> None:
        if sync_connection.dialect.name == "postgresql":
            lock_id = zlib.crc32(f"salesflow-migrate-{service_name}".encode())
            sync_connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        # "heads": a service may keep independent branches of migrations (incentive-service does).
        command.upgrade(_alembic_config(script_location, sync_connection), "heads")

    async with _MIGRATION_LOCK, database.engine.begin() as connection:
        await connection.run_sync(_upgrade)


def run_alembic_env(target_metadata: sa.MetaData) -> None:
    """The body of every service's env.py."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `salesflow migrate <service>` (it supplies the connection)")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
