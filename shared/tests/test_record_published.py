"""`record_published`: what a service keeps of its own events is written by the commit that publishes them, with
the events in publishing order; a rolled-back unit of work records nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from salesflow_shared.db import Database
from salesflow_shared.events import Envelope, EventData, LeadDisqualifiedV1, LeadErasedV1
from salesflow_shared.infra_tables import add_infrastructure_tables, outbox_table
from salesflow_shared.uow import INSERT_OUTBOX, UnitOfWork

metadata = sa.MetaData()
add_infrastructure_tables(metadata)
kept = sa.Table("kept", metadata, sa.Column("event_id", sa.String, primary_key=True), sa.Column("lead_id", sa.String))


@pytest.fixture
async def database(tmp_path: Path) -> Any:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.engine.dispose()


async def rows(database: Database, table: sa.Table) -> int:
    async with database.session() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_the_commit_that_publishes_records_its_events_in_order_and_a_rollback_nothing(database):
    seen: list[list[str]] = []

    async def record(uow: UnitOfWork, published: list[tuple[EventData, Envelope]]) -> None:
        seen.append([data.event_type for data, _ in published])
        await uow.session.execute(sa.insert(kept), [
            {"event_id": str(envelope.id), "lead_id": getattr(data, "lead_id", None)} for data, envelope in published])

    async with UnitOfWork(database, "test", record_published=record) as uow:
        uow.publish(LeadDisqualifiedV1(lead_id="l-1", reason="no budget"), org_id="o", subject_id="l-1")
        await uow.rollback()
        uow.publish(LeadErasedV1(lead_id="l-2"), org_id="o", subject_id="l-2")
        uow.publish(LeadDisqualifiedV1(lead_id="l-3", reason="spam"), org_id="o", subject_id="l-3")
        await uow.commit()
        await uow.commit()  # nothing published since: nothing recorded

    assert seen == [["LeadErased", "LeadDisqualified"]]
    assert await rows(database, kept) == 2 and await rows(database, outbox_table) == 2

    async with UnitOfWork(database, "test", record_published=record) as uow:
        uow.publish(LeadErasedV1(lead_id="l-4"), org_id="o", subject_id="l-4")
    assert await rows(database, kept) == 2 and await rows(database, outbox_table) == 2  # left uncommitted


# `UnitOfWork.take_outbox_rows`: a hook may write the commit's outbox rows in its own statement; the commit then
# writes none, and outside a commit there are none to take.
async def test_a_hook_that_takes_the_outbox_rows_writes_them_once_in_publishing_order(database):
    taken: list[list[str]] = []

    async def write_them(uow: UnitOfWork, published: list[tuple[EventData, Envelope]]) -> None:
        rows = uow.take_outbox_rows()
        taken.append([row["event_type"] for row in rows])
        assert uow.take_outbox_rows() == []  # taken once
        await uow.session.execute(INSERT_OUTBOX, rows)

    async with UnitOfWork(database, "test", record_published=write_them) as uow:
        assert uow.take_outbox_rows() == []
        first = uow.publish(LeadErasedV1(lead_id="l-1"), org_id="o", subject_id="l-1")
        second = uow.publish(LeadDisqualifiedV1(lead_id="l-2", reason="spam"), org_id="o", subject_id="l-2")
        await uow.commit()

    assert taken == [["LeadErased", "LeadDisqualified"]]
    async with database.session() as session:
        rows = (await session.execute(sa.select(outbox_table.c.event_id).order_by(outbox_table.c.id))).scalars()
        assert list(rows) == [str(first.id), str(second.id)]


async def test_rows_taken_before_the_commit_are_written_by_the_taker_and_handed_over_with_the_rest(database):
    """A handler may write the events published so far with its own last write (`take_outbox_rows` outside a
    commit); the commit writes only what was published after, and hands every row to the relay in publishing
    order. A rollback forgets what was taken (the statement that wrote it is rolled back too)."""
    handed: list[list[str]] = []
    uow = UnitOfWork(database, "test", after_commit=lambda events: handed.append(
        [message.event_type for message, _ in events]))
    async with uow:
        forgotten = uow.publish(LeadErasedV1(lead_id="l-0"), org_id="o", subject_id="l-0")
        [row] = uow.take_outbox_rows()
        assert row["event_id"] == str(forgotten.id)
        await uow.session.execute(INSERT_OUTBOX, [row])
        await uow.rollback()

        first = uow.publish(LeadErasedV1(lead_id="l-1"), org_id="o", subject_id="l-1")
        second = uow.publish(LeadDisqualifiedV1(lead_id="l-2", reason="spam"), org_id="o", subject_id="l-2")
        taken = uow.take_outbox_rows()
        assert [r["event_id"] for r in taken] == [str(first.id), str(second.id)]
        assert uow.take_outbox_rows() == []  # taken once
        await uow.session.execute(INSERT_OUTBOX, taken)
        third = uow.publish(LeadErasedV1(lead_id="l-3"), org_id="o", subject_id="l-3")
        await uow.commit()

    assert handed == [["LeadErased", "LeadDisqualified", "LeadErased"]]
    assert [e.id for e in uow.published] == [first.id, second.id, third.id]
    async with database.session() as session:
        rows = (await session.execute(sa.select(outbox_table.c.event_id).order_by(outbox_table.c.id))).scalars()
        assert list(rows) == [str(first.id), str(second.id), str(third.id)]  # each once, none of the rolled back
