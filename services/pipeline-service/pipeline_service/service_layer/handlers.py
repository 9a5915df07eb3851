"""Event handlers, registered in one explicit map (each runs in its own transaction with the inbox).

pipeline-service keeps its own projection of each lead (LeadCreated/LeadUpdated/ActivityLogged/LeadAssigned)
and re-evaluates the current stage's goal whenever it changes. Events may come twice (the inbox absorbs
that) or out of order: each family keeps its own subject_version and stale events are ignored; a lead's
row is created partially by whichever event comes first.
"""
from __future__ import annotations

from datetime import datetime

import structlog

from salesflow_shared.bus import PermanentFailure
from salesflow_shared.clock import Clock, SystemClock
from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import (
    ActivityLoggedV1,
    Envelope,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadDisqualifiedV1,
    LeadErasedV1,
    LeadRoutedV1,
    LeadUpdatedV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import Position
from ..domain import assignments, transitions
from . import engine

log = structlog.get_logger(__name__)


async def follow_owner(uow: UnitOfWork, pos: Position, owner_id: str | None, team_id: str | None,
                       now: datetime) -> None:
    """A new owner: open owner-tasks follow (tasks given to a named rep or a team stay put); the one before
    keeps read access to the position. Every change of a position's owner or team that finds open tasks goes
    through here, so the lead's open owner-tasks are always its owner's (see `assignments.changes_nothing`)."""
    await repository.remember_past_owner(uow.session, pos.org_id, pos.lead_id, pos.owner_id, owner_id,
                                         now)
    pos.owner_id, pos.team_id = owner_id, team_id
    owner_tasks = await repository.lock_open_tasks(uow.session, pos.org_id, pos.lead_id, owner_tasks_only=True)
    await engine.reassign_tasks(uow, owner_tasks, assignee_kind="owner", assignee_id=owner_id, team_id=team_id,
                                reason="owner_changed", now=now)


async def _require_pipeline(uow: UnitOfWork, envelope: Envelope, pipeline_id: str) -> None:
    if await engine.live_pipeline_stages(uow, envelope.org_id, pipeline_id) is None:
        # Parked in the dead-letter queue: replay it once the pipeline exists.
        raise PermanentFailure(f"pipeline {pipeline_id} does not exist in org {envelope.org_id}")


def make_event_handlers(clock: Clock) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on(LeadCreatedV1)
    @handlers.on(LeadUpdatedV1)
    async def on_lead_snapshot(data: LeadCreatedV1 | LeadUpdatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = clock.now()
        owner_id = data.lead.owner_id or None  # (a new lead's owner, as `follow_owner` below would set it)
        if isinstance(data, LeadCreatedV1) and await repository.add_position(
                uow.session, envelope.org_id, data.lead.lead_id, now, lead=data.lead.model_dump(mode="json"),
                lead_version=envelope.subject_version, owner_id=owner_id,
                team_id=data.lead.team_id if owner_id else None):
            return  # the lead's first event: unrouted, no task to follow the owner, no goal to judge
        pos = await engine.lock_position(uow, envelope.org_id, data.lead.lead_id, now)
        assert pos is not None
        if pos.status == "erased" or envelope.subject_version <= pos.lead_version:
            return  # stale (or erased): a newer snapshot is already known
        pos.lead = data.lead.model_dump(mode="json")
        pos.lead_version = envelope.subject_version
        if pos.assigned_version == 0 and data.lead.owner_id and data.lead.owner_id != pos.owner_id:
            # Until a LeadAssigned arrives, the owner lead-service knows is the best there is.
            await follow_owner(uow, pos, data.lead.owner_id, data.lead.team_id, now)
        await engine.advance_while_goal_met(uow, pos, now, str(envelope.id))
        await engine.save_position(uow, pos, now)

    @handlers.on(ActivityLoggedV1)
    async def on_activity_logged(data: ActivityLoggedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = clock.now()
        pos = await engine.lock_position(uow, envelope.org_id, data.lead_id, now)
        assert pos is not None
        if pos.status == "erased":
            return
        if not await engine.record_activity(uow, pos, data.activity_id, data.kind, data.occurred_at, now):
            return  # the same activity under another event id: already counted
        await engine.advance_while_goal_met(uow, pos, now, str(envelope.id))
        await engine.save_position(uow, pos, now)

    @handlers.on(LeadAssignedV1)
    async def on_lead_assigned(data: LeadAssignedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = clock.now()
        pos = await engine.lock_position(uow, envelope.org_id, data.lead_id, now)
        assert pos is not None
        if pos.status == "erased" or envelope.subject_version <= pos.assigned_version:
            return
        known = (pos.owner_id, pos.team_id, pos.owner_timezone)
        told = (data.owner_id, data.team_id, data.owner_timezone)
        if not assignments.changes_nothing(pos.assigned_version, known, envelope.subject_version, told):
            # (else nothing to write, no task to read: the routing of the same decision gave the lead to its owner)
            pos.assigned_version, pos.owner_timezone = envelope.subject_version, data.owner_timezone
            await follow_owner(uow, pos, data.owner_id, data.team_id, now)
        await engine.advance_while_goal_met(uow, pos, now, str(envelope.id))
        await engine.save_position(uow, pos, now)

    @handlers.on(LeadRoutedV1)
    async def on_lead_routed(data: LeadRoutedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = clock.now()
        pos = await engine.lock_position(uow, envelope.org_id, data.lead_id, now, along_pipeline=data.pipeline_id)
        assert pos is not None
        if envelope.subject_version <= pos.routed_version:
            return
        pos.routed_version = envelope.subject_version
        if (data.owner_id or data.team_id) and pos.assigned_version < envelope.subject_version:
            # The owner chosen with this routing (no later assignment known yet), known from now on as assigned
            # at this version: the stage's tasks are created for them, and the LeadAssigned of the same decision
            # (the next version) then changes nothing (see `assignments.changes_nothing`); an older one is stale.
            pos.assigned_version = envelope.subject_version
            if pos.status == "active" and pos.pipeline_id == data.pipeline_id and (
                    data.owner_id, data.team_id) != (pos.owner_id, pos.team_id):
                # Re-routed within its pipeline, the lead keeps its stage: its open tasks follow the new owner now.
                await follow_owner(uow, pos, data.owner_id, data.team_id, now)
            else:  # no open task (or those of the stage it leaves, skipped below)
                pos.owner_id, pos.team_id = data.owner_id, data.team_id
            pos.owner_timezone = data.owner_timezone or pos.owner_timezone
        if pos.status == "nurturing":
            # A nurtured lead routed again (it came back by itself, e.g. a new web form) re-opens now.
            await _require_pipeline(uow, envelope, data.pipeline_id)
            await engine.reopen(uow, pos, now, pipeline_id=data.pipeline_id, reason="entry",
                                triggering_event_id=str(envelope.id))
        elif not transitions.can("enter", pos.status):
            log.info("routing_ignored", lead_id=data.lead_id, status=pos.status)
        elif pos.status == "active" and pos.pipeline_id == data.pipeline_id:
            pass  # already in that pipeline: a re-routing to the same one changes nothing
        else:
            await _require_pipeline(uow, envelope, data.pipeline_id)
            await engine.enter_pipeline(uow, pos, data.pipeline_id, reason="entry", now=now,
                                        triggering_event_id=str(envelope.id))
        await engine.save_position(uow, pos, now)

    @handlers.on(LeadDisqualifiedV1)
    async def on_lead_disqualified(data: LeadDisqualifiedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = clock.now()
        pos = await engine.lock_position(uow, envelope.org_id, data.lead_id, now)
        assert pos is not None
        if envelope.subject_version < pos.lead_version or not transitions.can("disqualify", pos.status):
            return
        pos.lead_version = max(pos.lead_version, envelope.subject_version)
        await engine.leave_pipeline(uow, pos, status="disqualified", reason="lead_disqualified", now=now,
                                    keep_pipeline=False)
        pos.reengage_at = None
        await engine.save_position(uow, pos, now)

    @handlers.on(LeadErasedV1)
    async def on_lead_erased(data: LeadErasedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = clock.now()
        pos = await engine.lock_position(uow, envelope.org_id, data.lead_id, now)
        assert pos is not None
        if pos.status != "erased":
            await engine.leave_pipeline(uow, pos, status="erased", reason="lead_erased", now=now, keep_pipeline=False)
        # Scrub: keep only the id (so late events about the lead are recognised and ignored).
        pos.lead, pos.lead_version = {"lead_id": data.lead_id}, max(pos.lead_version, envelope.subject_version)
        pos.owner_timezone, pos.reengage_at, pos.lost_reason = None, None, None
        await repository.forget_activities(uow.session, envelope.org_id, data.lead_id)
        pos.activities = []
        await repository.forget_visit_notes(uow.session, envelope.org_id, data.lead_id)
        await engine.save_position(uow, pos, now)

    return handlers


EVENT_HANDLERS = make_event_handlers(SystemClock())
