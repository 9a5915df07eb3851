"""Alembic, run programmatically: by the pre-start step (`salesflow migrate`) or on start-up.

Each service's `migrations/env.py` is three lines that call `run_alembic_env(metadata)`; the connection
is handed in through the Alembic config, so the same code migrates PostgreSQL and SQLite. On PostgreSQL
an advisory lock serialises replicas that start together.
"""
from __future__ import annotations

import asyncio
import importlib
import pkgutil
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
        # "heads": a service may keep independent branches of migrations (incentive-service's commissions and
        # programs), and changes developed side by side on the same parent both apply.
        command.upgrade(_alembic_config(script_location, sync_connection), "heads")

    async with _MIGRATION_LOCK, database.engine.begin() as connection:
        await connection.run_sync(_upgrade)


def service_metadata(package: str) -> sa.MetaData:
    """Every table a service declares: `adapters/orm.py`'s metadata once each adapters module is imported.

    Some tables live beside orm.py in their own module (metrics' quota_milestones, incentive's programs) and
    join the metadata only when that module is imported; Alembic and the drift check must see all of them.
    """
    adapters = importlib.import_module(f"{package}.adapters")
    for module in pkgutil.iter_modules(adapters.__path__):
        importlib.import_module(f"{package}.adapters.{module.name}")
    metadata: sa.MetaData = importlib.import_module(f"{package}.adapters.orm").metadata
    return metadata


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


async def schema_drift(database: Database, script_location: Path, service_name: str,
                       target_metadata: sa.MetaData) -> list[Any]:
    """Migrate `database` to the newest heads, then answer where it differs from the ORM tables.

    An empty list means the hand-written migrations create exactly what the code declares (tables, columns,
    types, nullability, indexes, unique constraints and foreign keys); each entry is one of Alembic's
    autogenerate differences, e.g. `('add_column', None, 'leads', Column('x', ...))`.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    await run_migrations(database, script_location, service_name)

    def _compare(sync_connection: Any) -> list[Any]:
        context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
        # The version table is Alembic's own, not the service's.
        return [difference for difference in compare_metadata(context, target_metadata)
                if not _is_alembic_version(difference)]

    async with database.engine.connect() as connection:
        return await connection.run_sync(_compare)


def _is_alembic_version(difference: Any) -> bool:
    return (isinstance(difference, tuple) and difference[0] == "remove_table"
            and getattr(difference[1], "name", None) == "alembic_version")
