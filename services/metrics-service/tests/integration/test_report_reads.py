"""How reports read on PostgreSQL: in a transaction of their own (repository.report_transaction), begun with its
tuning in one round trip on the driver, every statement of the report in it, and nothing of it left on the
connection when it goes back to the pool; their rows fetched by the driver (reports.fetch)."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import sqlalchemy as sa

from metrics_service.adapters.reports import Sql, fetch
from metrics_service.adapters.repository import REPORT_CONNECTION, report_transaction
from salesflow_shared.db import Database
from salesflow_shared.testing import statements_sent
from salesflow_shared.uow import UnitOfWork


async def settings_of(session) -> tuple[object, ...]:
    """(backend pid, jit, work_mem, whether two statements run in one transaction)."""
    first = (await session.execute(sa.text("SELECT pg_backend_pid(), current_setting('jit'), "
                                           "current_setting('work_mem'), now(), clock_timestamp()"))).one()
    second = (await session.execute(sa.text("SELECT now()"))).scalar_one()
    return first[0], first[1], first[2], second == first[3]


async def test_a_report_reads_in_one_tuned_transaction_that_does_not_outlive_it(database_url):
    database = Database(database_url, pool_size=1)
    try:
        async with UnitOfWork(database, "test") as uow:
            pid, jit, work_mem, one_transaction = await settings_of(uow.session)
        assert one_transaction  # SQLAlchemy's own transactions, as the service uses them everywhere
        async with UnitOfWork(database, "test") as uow:
            async def report() -> tuple[object, ...]:
                async with report_transaction(uow.session):
                    inside = await settings_of(uow.session)
                    # a statement through the driver (the reports' rows) sees the same transaction
                    driver = (await (await uow.session.connection()).get_raw_connection()).driver_connection
                    assert driver is not None
                    driver_now = await driver.fetchval("SELECT now()")
                    assert driver_now == (await uow.session.execute(sa.text("SELECT now()"))).scalar_one()
                return inside
            inside, sent = await statements_sent(database, report)
            assert REPORT_CONNECTION not in uow.session.info  # the connection is not the report's any more
            assert inside == (pid, "off", "64MB", True)
            # through SQLAlchemy: the report's statements alone (its transaction is begun with the tuning)
            assert sent == ["SELECT pg_backend_pid(), current_setting('jit'), current_setting('work_mem'), now(), "
                            "clock_timestamp()", "SELECT now()", "SELECT now()"]
        async with UnitOfWork(database, "test") as uow:  # the same connection, back as it was
            assert await settings_of(uow.session) == (pid, jit, work_mem, True)
            await uow.session.execute(sa.text("CREATE TEMPORARY TABLE written (n int)"))
            await uow.session.execute(sa.text("INSERT INTO written VALUES (1)"))
            await uow.commit()
        async with UnitOfWork(database, "test") as uow:
            assert (await uow.session.execute(sa.text("SELECT count(*) FROM written"))).scalar_one() == 1
    finally:
        await database.dispose()


async def test_a_report_that_fails_leaves_the_connection_usable(database_url):
    database = Database(database_url, pool_size=1)
    try:
        async with UnitOfWork(database, "test") as uow:
            pid, jit, _, _ = await settings_of(uow.session)
        with pytest.raises(sa.exc.DBAPIError, match="division by zero"):
            async with UnitOfWork(database, "test") as uow, report_transaction(uow.session):
                await uow.session.execute(sa.text("SELECT 1 / 0"))
        async with UnitOfWork(database, "test") as uow:  # not left in the failed transaction
            assert (await settings_of(uow.session))[:2] == (pid, jit)
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
        async with UnitOfWork(database, "test") as uow, report_transaction(uow.session):
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
