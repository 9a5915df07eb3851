"""Each service's hand-written migrations create exactly the tables its code declares.

Alembic's autogenerate comparison, run against a database migrated from empty to the newest heads: a column,
type, nullability, index, unique constraint or foreign key that one side has and the other lacks is listed.
Both dialects, because the embedded mode migrates SQLite with batch operations that can drift on their own.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from salesflow_shared.db import Database
from salesflow_shared.migrations import schema_drift, service_metadata
from salesflow_shared.runner import SERVICES


async def _drift(entry, url: str, declared: sa.MetaData | None = None) -> list:
    database = Database(url)
    try:
        script_location = Path(importlib.import_module(entry.package).__file__).parent / "migrations"
        return await schema_drift(database, script_location, entry.name,
                                  declared if declared is not None else service_metadata(entry.package))
    finally:
        await database.dispose()


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
async def test_migrated_postgres_database_equals_the_orm_tables(entry, make_database_url):
    assert await _drift(entry, await make_database_url(entry.package)) == []


@pytest.mark.parametrize("entry", SERVICES, ids=[s.name for s in SERVICES])
async def test_migrated_sqlite_database_equals_the_orm_tables(entry, tmp_path):
    assert await _drift(entry, f"sqlite+aiosqlite:///{tmp_path / (entry.package + '.db')}") == []


async def test_the_check_sees_a_column_the_migrations_lack(tmp_path):
    """The comparison is not vacuous: a column declared in code but never migrated is reported."""
    entry = SERVICES[0]
    declared = sa.MetaData()
    for table in service_metadata(entry.package).sorted_tables:
        table.to_metadata(declared)
    declared.tables["leads"].append_column(sa.Column("declared_but_never_migrated", sa.Text))
    drift = await _drift(entry, f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}", declared)
    assert [(d[0], d[2], d[3].name) for d in drift] == [("add_column", "leads", "declared_but_never_migrated")]
