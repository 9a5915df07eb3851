"""The recalculation queue: what changed and needs statements recomputed, one row per (what, which, from when)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from salesflow_shared.inbox import dialect_insert

from ..orm import recalculation_queue


@dataclass(frozen=True)
class QueuedRecalculation:
    org_id: str
    subject_kind: str  # lead, participant, org
    subject_id: str
    on_date: date  # the earliest date affected
    reason: str
    queued_at: datetime


async def queue_recalculation(session: AsyncSession, org_id: str, kind: str, subject_id: str, on_date: date,
                              reason: str, now: datetime) -> None:
    """Note it, unless the same is noted already (the first reason stays)."""
    insert = dialect_insert(session)
    await session.execute(insert(recalculation_queue).values(
        org_id=org_id, subject_kind=kind, subject_id=subject_id, on_date=on_date, reason=reason, queued_at=now,
    ).on_conflict_do_nothing(index_elements=["org_id", "subject_kind", "subject_id", "on_date"]))
    (await session.connection()).info[_QUEUED] = True  # told to `when_queued` once the transaction commits


_QUEUED = "recalculation_queued"  # on the database connection: its transaction queued a recalculation


def when_queued(engine: AsyncEngine, queued: Callable[[], None]) -> None:
    """Call `queued` after each commit (on this engine) of a transaction that queued a recalculation."""
    def committed(connection: Any) -> None:
        if connection.info.pop(_QUEUED, False):
            queued()

    def rolled_back(connection: Any) -> None:
        connection.info.pop(_QUEUED, None)

    sa.event.listen(engine.sync_engine, "commit", committed)
    sa.event.listen(engine.sync_engine, "rollback", rolled_back)


async def take_queued(session: AsyncSession, batch: int) -> list[QueuedRecalculation]:
    """The `batch` oldest notes, removed from the queue (in this transaction). On PostgreSQL, notes another
    worker holds are skipped."""
    query = sa.select(recalculation_queue).order_by(recalculation_queue.c.queued_at).limit(batch)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    taken = [QueuedRecalculation(r.org_id, r.subject_kind, r.subject_id, r.on_date, r.reason, r.queued_at)
             for r in (await session.execute(query)).all()]
    for item in taken:
        await session.execute(sa.delete(recalculation_queue).where(
            recalculation_queue.c.org_id == item.org_id, recalculation_queue.c.subject_kind == item.subject_kind,
            recalculation_queue.c.subject_id == item.subject_id, recalculation_queue.c.on_date == item.on_date))
    return taken
