"""How reports read on PostgreSQL: every connection of the service with the reports' planner settings, a report's
statements each on its own (repository.report_reads: no transaction, no BEGIN or ROLLBACK round trips), the
connection back to SQLAlchemy's transactions after it, and their rows fetched by the driver (reports.fetch)."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import sqlalchemy as sa

from metrics_service.adapters.reports import Sql, fetch
from metrics_service.adapters.repository import REPORT_CONNECTION, REPORT_SETTINGS, report_reads
from salesflow_shared.db import Database
from salesflow_shared.testing import statements_sent
from salesflow_shared.uow import UnitOfWork


async def settings_of(session) -> tuple[object, ...]:
    """(backend pid, jit, work_mem, whether two statements run in one transaction)."""
    first = (await session.execute(sa.text("SELECT pg_backend_pid(), current_setting('jit'), "
                                           "current_setting('work_mem'), now()"))).one()
    second = (await session.execute(sa.text("SELECT now()"))).scalar_one()
    return first[0], first[1], first[2], second == first[3]


async def test_a_report_reads_each_statement_on_its_own_then_the_connection_is_as_it_was(database_url):
    database = Database(database_url, pool_size=1, session_settings=REPORT_SETTINGS)
    try:
        async with UnitOfWork(database, "test") as uow:  # SQLAlchemy's own transactions, as everywhere else
            settings = await settings_of(uow.session)
        pid = settings[0]
        assert settings == (pid, "off", "64MB", True)  # the reports' settings on every connection
        async with UnitOfWork(database, "test") as uow:
            async def report() -> tuple[object, ...]:
                async with report_reads(uow.session):
                    assert uow.session.info[REPORT_CONNECTION] is not None
                    return await settings_of(uow.session)
            inside, sent = await statements_sent(database, report)
            assert inside == (pid, "off", "64MB", False)  # the same connection, no transaction
            assert REPORT_CONNECTION not in uow.session.info
            assert sent == ["SELECT pg_backend_pid(), current_setting('jit'), current_setting('work_mem'), now()",
                            "SELECT now()"]
        async with UnitOfWork(database, "test") as uow:  # back to SQLAlchemy's transactions: a write commits
            assert await settings_of(uow.session) == (pid, "off", "64MB", True)
            await uow.session.execute(sa.text("CREATE TEMPORARY TABLE written (n int)"))
            await uow.session.execute(sa.text("INSERT INTO written VALUES (1)"))
            await uow.commit()
        async with UnitOfWork(database, "test") as uow:
            assert (await uow.session.execute(sa.text("SELECT count(*) FROM written"))).scalar_one() == 1
    finally:
        await database.dispose()


async def test_a_report_that_fails_leaves_the_connection_usable(database_url):
    database = Database(database_url, pool_size=1, session_settings=REPORT_SETTINGS)
    try:
        async with UnitOfWork(database, "test") as uow:
            pid = (await settings_of(uow.session))[0]
        with pytest.raises(sa.exc.DBAPIError, match="division by zero"):
            async with UnitOfWork(database, "test") as uow, report_reads(uow.session):
                await uow.session.execute(sa.text("SELECT 1 / 0"))
        async with UnitOfWork(database, "test") as uow:
            assert await settings_of(uow.session) == (pid, "off", "64MB", True)
    finally:
        await database.dispose()


class Figures(NamedTuple):
    label: str
    count: int
    note: str = "none"


async def test_fetch_reads_each_column_into_the_field_of_its_name_with_the_values_bound(database_url):
    # as on SQLite (unit/test_report_builders.py), through the driver: a parameter named twice is bound once
    database = Database(database_url, pool_size=1)
    try:
        async with UnitOfWork(database, "test") as uow, report_reads(uow.session):
            query = Sql("SELECT :note AS note, CAST(:n AS int) + 1 AS count, 'x' AS other, :label AS label "
                        "WHERE CAST(:n AS int) > 0", {"n": 6, "label": "a", "note": "n"})
            assert await fetch(uow.session, query.read_as(Figures)) == [Figures(label="a", count=7, note="n")]
            assert await fetch(uow.session, Sql("SELECT 7 AS count, 'a' AS label").read_as(Figures)) == [
                Figures("a", 7)]
            assert await fetch(uow.session, Sql("SELECT 7 AS count, 'a' AS label WHERE false").read_as(
                Figures)) == []
            with pytest.raises(LookupError, match="no column count"):
                await fetch(uow.session, Sql("SELECT 'a' AS label, 7 AS n").read_as(Figures))
    finally:
        await database.dispose()


async def test_the_services_connections_run_with_the_reports_settings(metrics_app):
    app, _ = metrics_app
    async with app.state.context.uow() as uow:
        assert (await settings_of(uow.session))[1:] == ("off", "64MB", True)
