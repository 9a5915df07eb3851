"""Event handlers, registered by event class in EVENT_HANDLERS (each runs in its own transaction with the inbox).

A first LeadAssigned sets the owner without a LeadUpdated (it would say nothing new); outcomes publish
LeadUpdated(cause="pipeline"), as the lead's status is lead-service's. Stale events are ignored by
`subject_version`, compared only within one producer's family of events about the lead: LeadAssigned
(assignment-service) against `assignment_version`, LeadWon/LeadLost/LeadReopened (pipeline-service) against
`outcome_version`; both are read with the locked lead. LeadWon also brings the value (and currency) the deal was
won at.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import (
    EmailSentV1,
    Envelope,
    LeadAssignedV1,
    LeadLostV1,
    LeadReopenedV1,
    LeadUpdatedV1,
    LeadWonV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import leads as lead_repo
from ..domain.stored_lead import StoredLead, to_cents
from .activities import log_external_activity
from .views import snapshot

log = structlog.get_logger(__name__)

EVENT_HANDLERS = EventHandlers()


async def _lead(uow: UnitOfWork, envelope: Envelope, lead_id: str) -> tuple[StoredLead, dict[str, int]] | None:
    """The lead locked, and the versions of the consumed events it has seen (one statement)."""
    found = await lead_repo.lock_lead_for_event(uow.session, envelope.org_id, lead_id)
    if found is None:
        log.info("event_for_unknown_lead_ignored", lead_id=lead_id)
    return found


async def _apply(uow: UnitOfWork, envelope: Envelope, found: tuple[StoredLead, dict[str, int]],
                 version_column: str, columns: dict[str, Any], cause: str | None) -> None:
    """Write the columns an event of another service sets (unless stale) and publish LeadUpdated with `cause`
    when something changed; no LeadUpdated when `cause` is None."""
    lead, seen = found
    current = seen[version_column]
    if envelope.subject_version <= current:
        log.info("stale_event_ignored", lead_id=lead.id, seen=current, got=envelope.subject_version)
        return
    changed = sorted(k for k, v in columns.items() if getattr(lead, k) != v)
    now = uow.clock.now()
    values: dict[str, Any] = {version_column: envelope.subject_version}
    if changed and lead.erased_at is None:
        values.update(columns, version=lead.version + 1, updated_at=now)
    await lead_repo.set_lead_columns(uow.session, envelope.org_id, lead.id, **values)
    if "owner_id" in columns:
        await lead_repo.remember_past_owner(uow.session, envelope.org_id, lead.id, lead.owner_id,
                                            columns["owner_id"], now)
    if "version" in values and cause is not None:
        after = replace(lead, **columns, version=values["version"])
        uow.publish(LeadUpdatedV1(lead=snapshot(after), changed=changed, cause=cause), org_id=envelope.org_id,
                    subject_id=lead.id, subject_version=after.version)


@EVENT_HANDLERS.on(LeadAssignedV1)
async def on_lead_assigned(data: LeadAssignedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    found = await _lead(uow, envelope, data.lead_id)
    if found is not None:
        # LeadAssigned told every consumer the owner: a first owner is echoed by no LeadUpdated (the lead's
        # version still moves, as its API readers see). A reassignment still is: a snapshot lead-service made
        # before applying it carries the owner before, and consumers that follow snapshots' owners
        # (notification-service) would keep that one.
        previous = found[0].owner_id
        reassigned = previous is not None and previous != data.owner_id
        await _apply(uow, envelope, found, "assignment_version",
                     {"owner_id": data.owner_id, "team_id": data.team_id}, "assignment" if reassigned else None)


@EVENT_HANDLERS.on(LeadWonV1)
async def on_lead_won(data: LeadWonV1, envelope: Envelope, uow: UnitOfWork) -> None:
    found = await _lead(uow, envelope, data.lead_id)
    if found is not None:
        columns: dict[str, Any] = {"status": "won"}
        if data.value is not None:  # the value the deal was won at is the lead's value from now on
            columns["value"] = to_cents(data.value)
            if data.currency:
                columns["currency"] = data.currency
        await _apply(uow, envelope, found, "outcome_version", columns, "pipeline")


@EVENT_HANDLERS.on(LeadLostV1)
async def on_lead_lost(data: LeadLostV1, envelope: Envelope, uow: UnitOfWork) -> None:
    found = await _lead(uow, envelope, data.lead_id)
    if found is not None:
        # Lost leads with a re-engage date are nurtured until then (docs/architecture.md).
        status = "nurturing" if data.reengage_at is not None else "lost"
        await _apply(uow, envelope, found, "outcome_version", {"status": status}, "pipeline")


@EVENT_HANDLERS.on(LeadReopenedV1)
async def on_lead_reopened(data: LeadReopenedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    found = await _lead(uow, envelope, data.lead_id)
    if found is not None:
        await _apply(uow, envelope, found, "outcome_version", {"status": "open"}, "pipeline")


@EVENT_HANDLERS.on(EmailSentV1)
async def on_email_sent(data: EmailSentV1, envelope: Envelope, uow: UnitOfWork) -> None:
    """A sequence email to the prospect: on the lead's timeline, and ActivityLogged for the metrics."""
    if data.recipient_kind != "prospect" or not data.lead_id:
        return
    found = await _lead(uow, envelope, data.lead_id)
    lead = found[0] if found is not None else None
    if lead is None or lead.erased_at is not None:
        return  # an email sent just before the erasure: nothing is recorded about the person any more
    subject = f"sequence {data.sequence_id} step {data.step}" if data.sequence_id else "email sent"
    # once per delivery: the same delivery reported twice under two event ids is recorded the first time
    await log_external_activity(uow, envelope.org_id, data.lead_id, external_id=f"email:{data.delivery_id}",
                                kind="email", rep_id=lead.owner_id, occurred_at=data.sent_at, now=uow.clock.now(),
                                subject=subject, source="sequence", outcome="sent")
