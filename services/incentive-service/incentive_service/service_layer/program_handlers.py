"""Event handlers of incentive programs: the facts programs score (activities, stage moves, wins, reopenings)
and the close dates the sandbagging guard watches. Registered beside the commission handlers (bootstrap)."""
from __future__ import annotations

from collections.abc import Sequence

from salesflow_shared.clock import Clock
from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import (
    ActivityLoggedV1,
    Envelope,
    EventData,
    LeadCreatedV1,
    LeadReopenedV1,
    LeadUpdatedV1,
    LeadWonV1,
    StageAdvancedV1,
)
from salesflow_shared.uow import UnitOfWork

from ..domain.programs.scoring import Fact
from .programs import record_close_date, record_fact, record_facts


def fact_of(data: EventData, envelope: Envelope) -> Fact | None:
    """The program fact an event is, or None. Activities are keyed by their id (the same activity however often
    it is sent), other facts by the event id."""
    seq = envelope.subject_version
    if isinstance(data, ActivityLoggedV1):
        return Fact(key=f"activity:{data.activity_id}", kind="activity", lead_id=data.lead_id, rep_id=data.rep_id,
                    at=data.occurred_at, seq=seq, activity_kind=data.kind, duration_seconds=data.duration_seconds,
                    outcome=data.outcome, source=data.source)
    if isinstance(data, StageAdvancedV1):
        return Fact(key=f"stage:{envelope.id}", kind="stage", lead_id=data.lead_id, rep_id=data.owner_id,
                    at=data.entered_at, seq=seq, stage_id=data.to_stage_id, stage_position=data.to_stage_position,
                    from_stage_position=data.from_stage_position)
    if isinstance(data, LeadWonV1):
        return Fact(key=f"won:{envelope.id}", kind="won", lead_id=data.lead_id, rep_id=data.owner_id,
                    at=data.won_at, seq=seq, value=data.value, currency=data.currency)
    if isinstance(data, LeadReopenedV1):
        return Fact(key=f"reopened:{envelope.id}", kind="reopened", lead_id=data.lead_id, rep_id=None,
                    at=data.reopened_at, seq=seq)
    return None


def make_program_handlers(clock: Clock) -> EventHandlers:
    async def on_fact(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        fact = fact_of(data, envelope)
        if fact is not None:
            await record_fact(uow, envelope.org_id, fact, clock.now())

    async def on_facts(items: list[tuple[EventData, Envelope]], uow: UnitOfWork) -> None:
        """A batch of deliveries (the service consumes in batches): each org's facts recorded and their leads
        re-scored together, so a busy program costs a few statements per batch, not per event."""
        by_org: dict[str, list[Fact]] = {}
        for data, envelope in items:
            fact = fact_of(data, envelope)
            if fact is not None:
                by_org.setdefault(envelope.org_id, []).append(fact)
        for org_id in sorted(by_org):
            await record_facts(uow, org_id, by_org[org_id], clock.now())

    on_fact.handle_many = on_facts  # type: ignore[attr-defined]  # the consumer's batch hook, read with hasattr

    async def on_lead_snapshot(data: LeadCreatedV1 | LeadUpdatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await record_close_date(uow, envelope.org_id, lead_id=data.lead.lead_id,
                                lead_version=envelope.subject_version, owner_id=data.lead.owner_id,
                                close_date=data.lead.expected_close_date, changed_at=envelope.occurred_at,
                                likely_new=isinstance(data, LeadCreatedV1))

    handlers = EventHandlers()
    handlers.add_each((ActivityLoggedV1, StageAdvancedV1, LeadWonV1, LeadReopenedV1), on_fact)
    handlers.add(LeadCreatedV1, on_lead_snapshot)
    handlers.add(LeadUpdatedV1, on_lead_snapshot)
    return handlers


__all__: Sequence[str] = ("fact_of", "make_program_handlers")
