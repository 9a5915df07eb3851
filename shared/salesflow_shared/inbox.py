"""The inbox: a unique `(handler, event_id)` row written in the handler's transaction.

No check-then-insert: the insert itself, with ON CONFLICT DO NOTHING, says whether this delivery is the
first. A concurrent duplicate waits on the unique index until the first commits, then inserts nothing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .db import rows_affected
from .events import Envelope, utcnow
from .infra_tables import inbox_table


def dialect_insert(session: AsyncSession) -> Callable[..., Any]:
    name = session.bind.dialect.name if session.bind is not None else "postgresql"
    return sqlite.insert if name == "sqlite" else postgresql.insert


# Built once (the hot path of every delivery): executed with a parameter dict, the statement object, its cache
# key and its compiled form are reused instead of being built again for each event.
_CLAIM = {name: insert(inbox_table).on_conflict_do_nothing(index_elements=["handler", "event_id"])
          for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))}
_CLAIM_RETURNING = {name: statement.returning(inbox_table.c.event_id) for name, statement in _CLAIM.items()}


def _dialect(session: AsyncSession) -> str:
    return "sqlite" if session.bind is not None and session.bind.dialect.name == "sqlite" else "postgresql"


async def claim_event(session: AsyncSession, handler: str, envelope: Envelope) -> bool:
    """Record that `handler` handles this event now; False when it already has (a redelivery)."""
    result = await session.execute(_CLAIM[_dialect(session)], {
        "handler": handler, "event_id": str(envelope.id), "event_type": envelope.type, "processed_at": utcnow()})
    return rows_affected(result) == 1


async def claim_events(session: AsyncSession, handler: str, envelopes: list[Envelope]) -> set[str]:
    """`claim_event` for many events in one statement; returns the ids handled for the first time."""
    if not envelopes:
        return set()
    now = utcnow()
    # Rows as parameters of one statement (sent as multi-row VALUES pages): the statement is compiled once and
    # cached, where rows inlined with .values([...]) are compiled again for every batch.
    rows = [{"handler": handler, "event_id": str(e.id), "event_type": e.type, "processed_at": now} for e in envelopes]
    return set((await session.execute(_CLAIM_RETURNING[_dialect(session)], rows)).scalars().all())
