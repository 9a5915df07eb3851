"""The projector worker, `project_all` (apply everything pending now) and the rebuild."""
from __future__ import annotations

import asyncio
from typing import Any

import structlog

from salesflow_shared.app import Worker, run_periodically
from salesflow_shared.db import Database

from ..adapters import read_models, repository
from .projections import project_pending

log = structlog.get_logger(__name__)


async def pending(database: Database, org_id: str | None = None) -> int:
    async with database.session() as session:
        return await repository.pending_events(session, org_id)


BATCHES_PER_TURN = 5


async def project_once(database: Database, batch_size: int = 1000) -> int:
    """One transaction: apply up to a few batches of pending events."""
    async with database.session() as session:
        applied = await project_pending(session, batch_size=batch_size, max_batches=BATCHES_PER_TURN)
        await session.commit()
        return applied


async def project_backlog(database: Database, batch_size: int) -> bool:
    """The worker's tick: `project_once`, True when it stopped at its limit (more may be pending, the worker
    goes on at once); a turn that took every pending event waits for the next commit instead of asking again
    at once (a query that would find nothing)."""
    return await project_once(database, batch_size) >= batch_size * BATCHES_PER_TURN


async def project_all(database: Database, batch_size: int = 1000) -> None:
    """Return once every event logged so far is applied (another projector may be doing the work)."""
    while True:
        if not await project_once(database, batch_size) and not await pending(database):
            return
        await asyncio.sleep(0)


def projector_worker(batch_size: int, idle_interval_s: float) -> Worker:
    """Apply pending events as they arrive: at once while there is a backlog; when idle, woken by the consumer's
    commits (in this process, or announced by NOTIFY when the projector runs apart), at most every idle
    interval."""
    async def projector(context: Any) -> None:
        await run_periodically(context, lambda: project_backlog(context.database, batch_size), idle_interval_s,
                               name="projector", wake_on_commit=True)
    return projector


async def rebuild_read_models(database: Database, org_id: str | None = None) -> dict[str, int]:
    """Delete the read models (of one org, or all) and apply the whole log again, in one transaction.

    The same projection code as the consumer's, over the log in event-id order (a random order unrelated to
    arrival), so the result equals what was built incrementally.
    """
    async with database.session() as session:
        result = await rebuild_in(session, database.dialect, org_id)
        await session.commit()
    return result


async def rebuild_in(session: Any, dialect: str, org_id: str | None) -> dict[str, int]:
    """`rebuild_read_models` inside the caller's open transaction (committed by the caller, e.g. together with
    the Idempotency-Key of the request that asked for it)."""
    await read_models.clear(session, dialect, org_id)
    replayed = await project_pending(session, batch_size=2000, org_id=org_id, order_by_event_id=True)
    log.info("read_models_rebuilt", org_id=org_id, events=replayed)
    return {"events_replayed": replayed}
