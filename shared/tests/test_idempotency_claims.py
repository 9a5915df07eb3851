"""A claimed Idempotency-Key whose work outlives the request (`once_across`): a live claim answers 409, a claim
whose process died (no heartbeat for CLAIM_STALE_AFTER) is taken over by a retry with the same key, which acts."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from salesflow_shared import idempotency
from salesflow_shared.db import Database
from salesflow_shared.errors import Conflict
from salesflow_shared.events import utcnow
from salesflow_shared.idempotency import IdempotentRequest, once_across
from salesflow_shared.infra_tables import add_infrastructure_tables, idempotency_table
from salesflow_shared.uow import UnitOfWork


@pytest.fixture
async def database(tmp_path: Path) -> Any:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    metadata = sa.MetaData()
    add_infrastructure_tables(metadata)
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.engine.dispose()


def request(key: str = "rescore-1") -> IdempotentRequest:
    return IdempotentRequest(key, "POST", "/v1/scoring-rules/rescore")


async def run(database: Database, idem: IdempotentRequest, act: Any) -> Any:
    return await once_across(idem, lambda: UnitOfWork(database, "test"), org_id="org-1", scope="rescore",
                             payload=None, act=act)


async def age_claims(database: Database, by: timedelta) -> None:
    async with database.engine.begin() as connection:
        claimed_at = (await connection.execute(sa.select(idempotency_table.c.created_at))).scalar_one()
        await connection.execute(sa.update(idempotency_table).values(created_at=claimed_at - by))


async def claim_and_die(database: Database) -> None:
    """A run that claims the key and never answers: its process was killed mid-work."""
    async with UnitOfWork(database, "test") as uow:
        assert await request().begin(uow.session, org_id="org-1", scope="rescore", payload=None) is None
        await uow.commit()


async def test_a_claim_left_by_a_dead_process_is_taken_over_once_its_heartbeat_is_stale(database):
    await claim_and_die(database)
    runs: list[int] = []

    async def act() -> dict[str, int]:
        runs.append(1)
        return {"rescored": 3}

    with pytest.raises(Conflict):  # still fresh: it may be running elsewhere
        await run(database, request(), act)
    await age_claims(database, idempotency.CLAIM_STALE_AFTER + timedelta(seconds=1))
    taken_over = await run(database, request(), act)
    assert taken_over.status_code == 200 and runs == [1]
    replay = await run(database, request(), act)
    assert replay.headers["idempotent-replayed"] == "true" and runs == [1]


def held_work() -> tuple[asyncio.Event, asyncio.Event, Callable[[], Awaitable[dict[str, int]]]]:
    """Work that runs until released: (set when it starts, set to release it, the work)."""
    started, release = asyncio.Event(), asyncio.Event()

    async def long_work() -> dict[str, int]:
        started.set()
        await release.wait()
        return {"rescored": 1}
    return started, release, long_work


async def test_a_running_claim_keeps_its_heartbeat_so_a_retry_still_gets_409(database, monkeypatch):
    monkeypatch.setattr(idempotency, "CLAIM_HEARTBEAT", timedelta(milliseconds=50))
    started, release, long_work = held_work()
    first = asyncio.create_task(run(database, request(), long_work))
    await started.wait()
    await age_claims(database, idempotency.CLAIM_STALE_AFTER + timedelta(seconds=1))
    await asyncio.sleep(0.3)  # a few beats: the claim is fresh again
    async with database.engine.connect() as connection:
        claimed_at = (await connection.execute(sa.select(idempotency_table.c.created_at))).scalar_one()
    assert utcnow() - idempotency.as_aware(claimed_at) < timedelta(seconds=5)
    with pytest.raises(Conflict):
        await run(database, request(), long_work)
    release.set()
    assert (await first).status_code == 200


async def test_a_failed_heartbeat_does_not_stop_the_next_ones(database, monkeypatch):
    monkeypatch.setattr(idempotency, "CLAIM_HEARTBEAT", timedelta(milliseconds=50))
    beats = {"failed": 0}
    real_heartbeat = IdempotentRequest.heartbeat

    async def flaky_heartbeat(self: IdempotentRequest, session: Any) -> None:
        if not beats["failed"]:
            beats["failed"] += 1
            raise ConnectionError("database blip")
        await real_heartbeat(self, session)

    monkeypatch.setattr(IdempotentRequest, "heartbeat", flaky_heartbeat)
    started, release, long_work = held_work()
    first = asyncio.create_task(run(database, request(), long_work))
    await started.wait()
    await asyncio.sleep(0.1)  # the first beat has failed
    await age_claims(database, idempotency.CLAIM_STALE_AFTER + timedelta(seconds=1))
    await asyncio.sleep(0.3)
    assert beats["failed"] == 1
    with pytest.raises(Conflict):  # the later beats kept the claim fresh: no takeover of running work
        # bounded: a takeover would run the work a second time, which waits for the release
        await asyncio.wait_for(run(database, request(), long_work), timeout=5)
    release.set()
    assert (await first).status_code == 200
