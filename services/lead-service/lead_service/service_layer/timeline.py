"""Recording and reading a lead's timeline (entries from domain/timeline.py, one table, idempotent)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import Envelope, EventData, LeadErasedV1, utcnow
from salesflow_shared.events.catalogue import ALL_EVENT_MODELS
from salesflow_shared.inbox import dialect_insert
from salesflow_shared.pagination import decode_cursor, encode_cursor
from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import lead_timeline
from ..domain.timeline import TOLD_EVENTS, entries_for
from .views import as_utc, iso


async def record_timeline(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
    """Add the event's entries to its lead's timeline (a redelivery adds nothing: unique per event and kind)."""
    insert = dialect_insert(uow.session)
    for n, entry in enumerate(entries_for(data, envelope)):
        await uow.session.execute(insert(lead_timeline).values(
            id=f"{envelope.id}.{n}", org_id=envelope.org_id, lead_id=entry.lead_id, event_id=str(envelope.id),
            event_type=envelope.type, kind=entry.kind, occurred_at=as_utc(entry.occurred_at),
            correlation_id=envelope.correlation_id, producer=envelope.producer, summary=entry.summary[:600],
            details=entry.details, recorded_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["org_id", "event_id", "kind"]))


async def forget_timeline(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
    """An erased lead's story goes with its data (reasons and notes may name the person)."""
    await uow.session.execute(sa.delete(lead_timeline).where(
        lead_timeline.c.org_id == envelope.org_id, lead_timeline.c.lead_id == envelope.subject_id))


TIMELINE_HANDLERS = EventHandlers()
TIMELINE_HANDLERS.add_each((m for m in ALL_EVENT_MODELS if m.event_type in TOLD_EVENTS), record_timeline)
TIMELINE_HANDLERS.add(LeadErasedV1, forget_timeline)


def entry_to_dict(row: Any) -> dict[str, Any]:
    return {"event_id": row.event_id, "event_type": row.event_type, "kind": row.kind,
            "occurred_at": iso(row.occurred_at), "correlation_id": row.correlation_id, "producer": row.producer,
            "summary": row.summary, "details": row.details or {}}


async def current_stage(uow: UnitOfWork, org_id: str, lead_id: str) -> dict[str, Any] | None:
    """The stage the lead last entered, as its timeline tells it."""
    row = (await uow.session.execute(sa.select(lead_timeline.c.details).where(
        lead_timeline.c.org_id == org_id, lead_timeline.c.lead_id == lead_id,
        lead_timeline.c.kind == "stage_entered",
    ).order_by(lead_timeline.c.occurred_at.desc(), lead_timeline.c.recorded_at.desc()).limit(1))).first()
    return dict(row.details) if row is not None else None


async def timeline_page(uow: UnitOfWork, org_id: str, lead_id: str, *, limit: int, cursor: str | None,
                        correlation_id: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Entries oldest first (the story in order), keyset on (occurred_at, id)."""
    query = sa.select(lead_timeline).where(lead_timeline.c.org_id == org_id, lead_timeline.c.lead_id == lead_id)
    if correlation_id is not None:
        query = query.where(lead_timeline.c.correlation_id == correlation_id)
    after = decode_cursor(cursor, 2)
    if after is not None:
        try:
            at = as_utc(datetime.fromisoformat(str(after[0]).replace("Z", "+00:00")))
        except ValueError:
            from salesflow_shared.errors import ValidationFailed
            raise ValidationFailed.single("cursor", "not a cursor this API issued") from None
        query = query.where(sa.or_(lead_timeline.c.occurred_at > at,
                                   sa.and_(lead_timeline.c.occurred_at == at, lead_timeline.c.id > str(after[1]))))
    rows = (await uow.session.execute(query.order_by(lead_timeline.c.occurred_at, lead_timeline.c.id)
                                      .limit(limit + 1))).all()
    next_cursor = encode_cursor([iso(rows[limit - 1].occurred_at), rows[limit - 1].id]) if len(rows) > limit else None
    return [entry_to_dict(r) for r in rows[:limit]], next_cursor
