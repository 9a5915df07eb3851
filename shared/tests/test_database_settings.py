"""Database(session_settings=...): every connection of the engine is opened with the settings (SET once per
connection), whichever connection a unit of work gets."""
from __future__ import annotations

import asyncio

import sqlalchemy as sa

from salesflow_shared.db import Database


async def test_every_connection_is_opened_with_the_session_settings(database_url):
    database = Database(database_url, pool_size=2, session_settings={
        "application_name": "salesflow-settings-test", "work_mem": "12MB"})
    plain = Database(database_url, pool_size=1)
    try:
        async def settings() -> tuple[int, str, str]:
            async with database.session() as session:
                row = (await session.execute(sa.text(
                    "SELECT pg_backend_pid(), current_setting('application_name'), current_setting('work_mem'), "
                    "pg_sleep(0.05)"))).one()
                return row[0], row[1], row[2]
        found = await asyncio.gather(*(settings() for _ in range(4)))  # several connections at once
        assert len({pid for pid, _, _ in found}) > 1
        assert {(name, work_mem) for _, name, work_mem in found} == {("salesflow-settings-test", "12MB")}
        async with plain.session() as session:  # an engine without them: the server's
            assert (await session.execute(sa.text("SELECT current_setting('application_name')"))).scalar_one() \
                != "salesflow-settings-test"
    finally:
        await database.dispose()
        await plain.dispose()
