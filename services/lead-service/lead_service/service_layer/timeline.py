"""Recording and reading a lead's timeline (entries from domain/timeline.py, one table, idempotent).

The entries of this service's own events (LeadCreated, LeadUpdated, LeadDisqualified) are written by the
transaction that publishes them (`record_own_events`, the unit of work's commit hook), and so is the forgetting
of an erased lead's story: they are not consumed back through the broker. Other services' events are consumed.
"""
from __future__ import annotations

from typing import Any

from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import Envelope, EventData, LeadErasedV1
from salesflow_shared.events.catalogue import ALL_EVENT_MODELS
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import timeline as timeline_repo
from ..adapters.repository.timeline import StoredEntry
from ..domain.timeline import TOLD_EVENTS, entries_for
from ..domain.times import as_utc, iso


def _stored_entries(data: EventData, envelope: Envelope) -> list[tuple[str, StoredEntry]]:
    """The event's entries as stored, with their org."""
    return [(envelope.org_id, StoredEntry(
        id=f"{envelope.id}.{n}", lead_id=entry.lead_id, event_id=str(envelope.id), event_type=envelope.type,
        kind=entry.kind, occurred_at=as_utc(entry.occurred_at), correlation_id=envelope.correlation_id,
        producer=envelope.producer, summary=entry.summary[:600], details=entry.details))
        for n, entry in enumerate(entries_for(data, envelope))]


async def record_timeline(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
    """Add the event's entries to its lead's timeline (a redelivery adds nothing: unique per event and kind);
    an erased lead's story goes with its data (reasons and notes may name the person)."""
    if isinstance(data, LeadErasedV1):
        await timeline_repo.forget_lead(uow.session, envelope.org_id, envelope.subject_id)
        return
    await timeline_repo.add_entries(uow.session, _stored_entries(data, envelope), uow.clock.now())


async def record_timelines(items: list[tuple[EventData, Envelope]], uow: UnitOfWork,
                           outbox_rows: list[dict[str, Any]] | None = None) -> None:
    """`record_timeline` for a delivered batch (events in delivery order): every entry in one statement (with
    `outbox_rows`, a commit's, when given). An erasure in the batch drops its lead's entries of the events before
    it, as if added and then forgotten."""
    entries: list[tuple[str, StoredEntry]] = []
    for data, envelope in items:
        if isinstance(data, LeadErasedV1):
            erased = (envelope.org_id, envelope.subject_id)
            entries = [(org_id, entry) for org_id, entry in entries if (org_id, entry.lead_id) != erased]
            await timeline_repo.forget_lead(uow.session, envelope.org_id, envelope.subject_id)
        else:
            entries.extend(_stored_entries(data, envelope))
    await timeline_repo.add_entries(uow.session, entries, uow.clock.now(), outbox_rows or ())


record_timeline.handle_many = record_timelines  # type: ignore[attr-defined]  # the consumer's batch hook


# The told events this service publishes itself: their entries are written with them (`record_own_events`).
OWN_TOLD_EVENTS = frozenset(m.event_type for m in ALL_EVENT_MODELS
                            if m.event_type in TOLD_EVENTS and m.producer == "lead-service")


async def record_own_events(uow: UnitOfWork, published: list[tuple[EventData, Envelope]]) -> None:
    """At the commit that publishes them: the entries of this service's told events, and an erasure forgets
    its lead's story (in publishing order, as `record_timelines` takes a delivered batch). The entries and the
    commit's outbox rows are written together (one statement on PostgreSQL: a lead's intake pays one round trip
    for both)."""
    told = [(data, envelope) for data, envelope in published
            if envelope.type in OWN_TOLD_EVENTS or isinstance(data, LeadErasedV1)]
    if told:
        await record_timelines(told, uow, uow.take_outbox_rows())


TIMELINE_HANDLERS = EventHandlers()
# Own events too: no longer subscribed to (bootstrap's `retired_event_types`), but one queued before the upgrade
# that wrote entries at publication is still recorded when delivered (idempotent: one entry per event and kind).
TIMELINE_HANDLERS.add_each((m for m in ALL_EVENT_MODELS if m.event_type in TOLD_EVENTS), record_timeline)
# The erasure is consumed too, though its transaction forgot the story already: delivered after the events of
# other services that were on their way at the erasure, it forgets their entries as well (once per erasure,
# not per lead). One handler for it, so that a batch forgets and adds in delivery order.
TIMELINE_HANDLERS.add(LeadErasedV1, record_timeline)


def entry_to_dict(entry: StoredEntry) -> dict[str, Any]:
    return {"event_id": entry.event_id, "event_type": entry.event_type, "kind": entry.kind,
            "occurred_at": iso(entry.occurred_at), "correlation_id": entry.correlation_id,
            "producer": entry.producer, "summary": entry.summary, "details": entry.details}


async def current_stage(uow: UnitOfWork, org_id: str, lead_id: str) -> dict[str, Any] | None:
    """The stage the lead last entered, as its timeline tells it."""
    return await timeline_repo.last_stage_entered(uow.session, org_id, lead_id)


async def timeline_page(uow: UnitOfWork, org_id: str, lead_id: str, *, limit: int, cursor: str | None,
                        correlation_id: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Entries oldest first (the story in order), keyset on (occurred_at, id)."""
    page = await timeline_repo.entries_page(uow.session, org_id, lead_id, limit=limit, cursor=cursor,
                                            correlation_id=correlation_id)
    return [entry_to_dict(e) for e in page.items], page.next_cursor
