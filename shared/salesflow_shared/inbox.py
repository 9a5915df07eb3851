"""The inbox: a unique `(handler, event_id)` row written in the handler's transaction.

No check-then-insert: the insert itself, with ON CONFLICT DO NOTHING, says whether this delivery is the
first. A concurrent duplicate waits on the unique index until the first commits, then inserts nothing.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .db import rows_affected
from .events import Envelope, utcnow
from .infra_tables import inbox_table

S = TypeVar("S")


def dialect_insert(session: AsyncSession) -> Callable[..., Any]:
    name = session.bind.dialect.name if session.bind is not None else "postgresql"
    return sqlite.insert if name == "sqlite" else postgresql.insert


def dialect_name(session: AsyncSession) -> str:
    """The key of `per_dialect`'s statements for this session's database."""
    return "sqlite" if session.bind is not None and session.bind.dialect.name == "sqlite" else "postgresql"


def per_dialect(build: Callable[[Callable[..., Any]], S]) -> dict[str, S]:
    """An INSERT ... ON CONFLICT statement built once per dialect by `build(insert)`, for statements on a hot
    path: executed with a parameter dict, the statement object, its cache key and its compiled form are reused
    instead of being built again each time. Pick it with `dialect_name(session)`."""
    return {"sqlite": build(sqlite.insert), "postgresql": build(postgresql.insert)}


# Built once (the hot path of every delivery).
_CLAIM = per_dialect(lambda insert: insert(inbox_table).on_conflict_do_nothing(index_elements=["handler", "event_id"]))
_CLAIM_RETURNING = {name: statement.returning(inbox_table.c.handler, inbox_table.c.event_id)
                    for name, statement in _CLAIM.items()}


async def claim_event(session: AsyncSession, handler: str, envelope: Envelope) -> bool:
    """Record that `handler` handles this event now; False when it already has (a redelivery)."""
    result = await session.execute(_CLAIM[dialect_name(session)], {
        "handler": handler, "event_id": str(envelope.id), "event_type": envelope.type, "processed_at": utcnow()})
    return rows_affected(result) == 1


async def claim_for_handlers(session: AsyncSession, claims: list[tuple[str, Envelope]]) -> set[tuple[str, str]]:
    """`claim_event` for many (handler, event) pairs, of any handlers, in one statement; returns the
    (handler, event id) pairs handled for the first time."""
    if not claims:
        return set()
    now = utcnow()
    # Rows as parameters of one statement (sent as multi-row VALUES pages): the statement is compiled once and
    # cached, where rows inlined with .values([...]) are compiled again for every batch.
    rows = [{"handler": handler, "event_id": str(e.id), "event_type": e.type, "processed_at": now}
            for handler, e in claims]
    result = await session.execute(_CLAIM_RETURNING[dialect_name(session)], rows)
    return {(handler, event_id) for handler, event_id in result.all()}
