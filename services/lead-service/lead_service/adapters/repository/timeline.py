"""A lead's timeline: one row per entry (domain/timeline.py), idempotent per event and kind."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.inbox import dialect_name, per_dialect
from salesflow_shared.pagination import decode_cursor, encode_cursor

from ...domain.times import iso
from ..orm import lead_timeline
from . import Page, cursor_instant


@dataclass(frozen=True)
class StoredEntry:
    id: str  # "<event id>.<n>"
    lead_id: str
    event_id: str
    event_type: str
    kind: str
    occurred_at: datetime
    correlation_id: str | None
    producer: str
    summary: str
    details: dict[str, Any]


# Built once: every event lead-service consumes adds entries (executed with parameter rows, the statement,
# its cache key and its compiled form are reused).
_ADD_ENTRY = per_dialect(
    lambda insert: insert(lead_timeline).on_conflict_do_nothing(index_elements=["org_id", "event_id", "kind"]))


async def add_entries(session: AsyncSession, entries: Sequence[tuple[str, StoredEntry]], now: datetime) -> None:
    """Add the (org id, entry) pairs in one statement, each unless its event already added its kind (a
    redelivery adds nothing)."""
    if not entries:
        return
    await session.execute(_ADD_ENTRY[dialect_name(session)], [{
        "id": entry.id, "org_id": org_id, "lead_id": entry.lead_id, "event_id": entry.event_id,
        "event_type": entry.event_type, "kind": entry.kind, "occurred_at": entry.occurred_at,
        "correlation_id": entry.correlation_id, "producer": entry.producer, "summary": entry.summary,
        "details": entry.details, "recorded_at": now} for org_id, entry in entries])


async def forget_lead(session: AsyncSession, org_id: str, lead_id: str) -> None:
    await session.execute(sa.delete(lead_timeline).where(
        lead_timeline.c.org_id == org_id, lead_timeline.c.lead_id == lead_id))


async def last_stage_entered(session: AsyncSession, org_id: str, lead_id: str) -> dict[str, Any] | None:
    """The details of the lead's last `stage_entered` entry."""
    row = (await session.execute(sa.select(lead_timeline.c.details).where(
        lead_timeline.c.org_id == org_id, lead_timeline.c.lead_id == lead_id,
        lead_timeline.c.kind == "stage_entered",
    ).order_by(lead_timeline.c.occurred_at.desc(), lead_timeline.c.recorded_at.desc()).limit(1))).first()
    return dict(row.details) if row is not None else None


def _entry(row: Any) -> StoredEntry:
    return StoredEntry(row.id, row.lead_id, row.event_id, row.event_type, row.kind, row.occurred_at,
                       row.correlation_id, row.producer, row.summary, row.details or {})


async def entries_page(session: AsyncSession, org_id: str, lead_id: str, *, limit: int, cursor: str | None,
                       correlation_id: str | None) -> Page[StoredEntry]:
    """Entries oldest first (the story in order), keyset on (occurred_at, id)."""
    query = sa.select(lead_timeline).where(lead_timeline.c.org_id == org_id, lead_timeline.c.lead_id == lead_id)
    if correlation_id is not None:
        query = query.where(lead_timeline.c.correlation_id == correlation_id)
    after = decode_cursor(cursor, 2)
    if after is not None:
        at = cursor_instant(after[0])
        query = query.where(sa.or_(lead_timeline.c.occurred_at > at,
                                   sa.and_(lead_timeline.c.occurred_at == at, lead_timeline.c.id > str(after[1]))))
    rows = (await session.execute(query.order_by(lead_timeline.c.occurred_at, lead_timeline.c.id)
                                  .limit(limit + 1))).all()
    next_cursor = encode_cursor([iso(rows[limit - 1].occurred_at), rows[limit - 1].id]) if len(rows) > limit else None
    return Page(items=[_entry(r) for r in rows[:limit]], next_cursor=next_cursor)
