"""A lead's timeline: one row per entry (domain/timeline.py), idempotent per event and kind."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import array_params
from salesflow_shared.inbox import dialect_name, per_dialect
from salesflow_shared.outbox_rows import OUTBOX_COLUMNS, insert_outbox_from, unnest
from salesflow_shared.pagination import decode_cursor, encode_cursor
from salesflow_shared.uow import INSERT_OUTBOX

from ...domain.times import iso
from ..orm import lead_timeline, leads
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
# its cache key and its compiled form are reused). An entry about an erased lead is not added: an event of
# another service delivered after the erasure's commit (which forgot the lead's story) would otherwise bring
# back reasons and notes about the person.
_ENTRY_VALUES = sa.select(*(sa.bindparam(column.name, type_=column.type) for column in lead_timeline.c)).where(
    ~sa.exists().where(leads.c.org_id == sa.bindparam("org_id"), leads.c.id == sa.bindparam("lead_id"),
                       leads.c.erased_at.is_not(None)))
_ADD_ENTRY = per_dialect(
    lambda insert: insert(lead_timeline).from_select([column.name for column in lead_timeline.c], _ENTRY_VALUES)
    .on_conflict_do_nothing(index_elements=["org_id", "event_id", "kind"]))


_ENTRY_ARRAYS = (("id", "varchar"), ("org_id", "varchar"), ("lead_id", "varchar"), ("event_id", "varchar"),
                 ("event_type", "varchar"), ("kind", "varchar"), ("occurred_at", "timestamptz"),
                 ("correlation_id", "varchar"), ("producer", "varchar"), ("summary", "varchar"), ("details", "text"))


# PostgreSQL: the entries and the commit's outbox rows in one statement (a data-modifying CTE), each kind of row
# passed as one array per column so that the statement is the same whatever the number of rows. The outbox rows
# are inserted in the order given (their ids are the relay's publishing order).
_ADD_ENTRIES_AND_OUTBOX = sa.text(f"""
WITH entries AS (
    INSERT INTO {lead_timeline.name} (id, org_id, lead_id, event_id, event_type, kind, occurred_at, correlation_id,
                                      producer, summary, details, recorded_at)
    SELECT e.id, e.org_id, e.lead_id, e.event_id, e.event_type, e.kind, e.occurred_at, e.correlation_id,
           e.producer, e.summary, CAST(e.details AS json), CAST(:now AS timestamptz)
    FROM {unnest("e", _ENTRY_ARRAYS)}
    ORDER BY e.n
    ON CONFLICT (org_id, event_id, kind) DO NOTHING
)
{insert_outbox_from("o")}
""")


def _entry_row(org_id: str, entry: StoredEntry, now: datetime) -> dict[str, Any]:
    return {"id": entry.id, "org_id": org_id, "lead_id": entry.lead_id, "event_id": entry.event_id,
            "event_type": entry.event_type, "kind": entry.kind, "occurred_at": entry.occurred_at,
            "correlation_id": entry.correlation_id, "producer": entry.producer, "summary": entry.summary,
            "details": entry.details, "recorded_at": now}


async def add_entries(session: AsyncSession, entries: Sequence[tuple[str, StoredEntry]], now: datetime,
                      outbox_rows: Sequence[dict[str, Any]] = ()) -> None:
    """Add the (org id, entry) pairs, each unless its event already added its kind (a redelivery adds nothing),
    and the commit's `outbox_rows` (`UnitOfWork.take_outbox_rows`) when given: one statement on PostgreSQL, one
    per table on SQLite."""
    if outbox_rows and dialect_name(session) == "postgresql":
        rows = [_entry_row(org_id, entry, now) for org_id, entry in entries]
        await session.execute(_ADD_ENTRIES_AND_OUTBOX, {
            "now": now, **array_params("e", (name for name, _ in _ENTRY_ARRAYS), rows),  # (details: a dict, as JSON)
            **array_params("o", OUTBOX_COLUMNS, outbox_rows)})
        return
    if entries:
        await session.execute(_ADD_ENTRY[dialect_name(session)], [_entry_row(o, e, now) for o, e in entries])
    if outbox_rows:
        await session.execute(INSERT_OUTBOX, list(outbox_rows))


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
