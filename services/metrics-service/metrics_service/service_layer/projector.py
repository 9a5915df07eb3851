"""The projector worker, `project_all` (apply everything pending now) and the rebuild."""
from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.app import Worker, run_periodically
from salesflow_shared.db import Database

from ..adapters import read_models, repository
from .projections import project_pending

log = structlog.get_logger(__name__)


async def pending(database: Database, org_id: str | None = None) -> int:
    async with database.session() as session:
        return await repository.pending_events(session, org_id)


BATCHES_PER_TURN = 5


async def project_once(database: Database, batch_size: int = 1000, *, check_turn: bool = False) -> int | None:
    """One transaction: apply up to a few batches of pending events. With `check_turn`, None when another
    projector has the turn (told apart from nothing pending, for one more statement)."""
    async with database.session() as session:
        if check_turn and not await read_models.take_projector_turn(session):
            return None
        applied = await project_pending(session, batch_size=batch_size, max_batches=BATCHES_PER_TURN)
        await session.commit()
        return applied


async def project_backlog(database: Database, batch_size: int) -> bool:
    """The worker's tick: `project_once`, True when it stopped at its limit (more may be pending, the worker
    goes on at once); a turn that took every pending event waits for the next commit instead of asking again
    at once (a query that would find nothing)."""
    return (await project_once(database, batch_size) or 0) >= batch_size * BATCHES_PER_TURN


class Backlog:
    """Whether logged events may wait for a projector, when this process's consumer applies what it logs
    itself (handlers.event_handlers) and the worker only what the consumer could not (another projector had the
    turn): then most commits leave nothing waiting, and neither asks the database for waiting events unless
    told they may be there.

    Counted in generations, so that a turn and a commit that leaves events, at the same time, cannot lose them:
    `grown` counts the commits that left events (told after each commit, when its events are visible), and
    `drained` is the count a projector read before a turn that then took every waiting event (what those
    commits left, visible to its claim). At start, events logged before may wait."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.grown = 1
        self.drained = 0

    @property
    def may_wait(self) -> bool:
        return self.grown > self.drained

    def seen(self) -> int:
        """The generation to pass to `drained_up_to` once a turn that starts now took every waiting event."""
        return self.grown

    def drained_up_to(self, seen: int) -> None:
        self.drained = max(self.drained, seen)

    def after_commit(self, session: AsyncSession, left: bool, drained: int | None) -> None:
        """Once the session's transaction commits: it left events (`left`), or took every waiting event of the
        generation `drained`."""
        if left or drained is not None:
            event.listen(session.sync_session, "after_commit",
                         lambda _session: self._committed(left, drained), once=True)

    def _committed(self, left: bool, drained: int | None) -> None:
        if drained is not None:
            self.drained_up_to(drained)
        if left:
            self.grown += 1

    async def project(self, database: Database) -> bool:
        """The worker's tick: nothing may wait, no query; else a turn of the projector (`project_once`), True
        when it stopped at its limit (more may wait: the worker goes on at once). Another projector having the
        turn, the events still wait (that one's commit wakes the worker again)."""
        if not self.may_wait:
            return False
        seen = self.seen()
        applied = await project_once(database, self.batch_size, check_turn=True)
        if applied is None:
            return False
        if applied < self.batch_size * BATCHES_PER_TURN:
            self.drained_up_to(seen)
            return False
        return True


async def project_all(database: Database, batch_size: int = 1000) -> None:
    """Return once every event logged so far is applied (another projector may be doing the work)."""
    while True:
        if not await project_once(database, batch_size) and not await pending(database):
            return
        await asyncio.sleep(0)


def projector_worker(batch_size: int, idle_interval_s: float, backlog: Backlog | None = None) -> Worker:
    """Apply pending events as they arrive: at once while there is a backlog; when idle, woken by the consumer's
    commits (in this process, or announced by NOTIFY when the projector runs apart), at most every idle
    interval. With a `backlog` (the consumer applies what it logs), only when it tells that events wait."""
    async def projector(context: Any) -> None:
        tick = (lambda: project_backlog(context.database, batch_size)) if backlog is None else \
            (lambda: backlog.project(context.database))
        await run_periodically(context, tick, idle_interval_s, name="projector", wake_on_commit=True)
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
