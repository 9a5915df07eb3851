"""Event handlers, registered in one explicit map (the service consumes in batches: a batch's deliveries run in
one transaction with the inbox, each handler after the one before it, and see its writes).

The lead projection keeps two version counters: `lead_version` for lead-service's events (LeadCreated,
LeadUpdated, LeadDisqualified, LeadErased) and `pipeline_version` for pipeline-service's (StageAdvanced,
LeadWon, LeadLost, LeadReopened); a stale event changes nothing. Routing at creation happens once per
lead, whatever order or number of times LeadCreated arrives (the inbox stops redeliveries, `routed_at`
stops a second LeadCreated for the same lead).
"""
from __future__ import annotations

from typing import Any

import structlog

from salesflow_shared.bus import PermanentFailure
from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import (
    Envelope,
    LeadCreatedV1,
    LeadDisqualifiedV1,
    LeadErasedV1,
    LeadLostV1,
    LeadReopenedV1,
    LeadUpdatedV1,
    LeadWonV1,
    StageAdvancedV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository as repo
from ..domain.rules import LEAD_CREATED, LEAD_WON, STAGE_ENTRY, routed_on
from .assigning import LEAD_UPDATED, apply_decision, decide, match_rules

log = structlog.get_logger(__name__)

EVENT_HANDLERS = EventHandlers()

OPEN_STATUSES = {"open", "qualified"}


class LeadNotKnownYet(Exception):
    """A pipeline event for a lead whose LeadCreated has not reached us yet: retried later."""


def _snapshot(lead: Any) -> dict[str, Any]:
    """The lead fields routing reads; contact details and company names are not kept here."""
    data: dict[str, Any] = lead.model_dump(mode="json", exclude={"contact"})
    data["company"] = {k: v for k, v in (data.get("company") or {}).items() if k in ("company_id", "size", "industry")}
    return data


def _is_open(snapshot: dict[str, Any]) -> bool:
    return snapshot.get("status", "open") in OPEN_STATUSES


async def _take_snapshot(uow: UnitOfWork, envelope: Envelope, snapshot: dict[str, Any]) -> None:
    """Add the lead to the projection from a lead-service snapshot, or write the snapshot if it is newer."""
    row, created = await repo.ensure_lead(uow.session, envelope.org_id, snapshot["lead_id"], snapshot,
                                          uow.clock.now(), lead_version=envelope.subject_version,
                                          open_=_is_open(snapshot))
    if not created:
        await _newer_snapshot(uow, envelope, snapshot, row)


async def _newer_snapshot(uow: UnitOfWork, envelope: Envelope, snapshot: dict[str, Any], row: Any) -> Any:
    """The known lead's locked `row` with the snapshot written if it is newer (and the lead not erased)."""
    if envelope.subject_version > row.lead_version and not row.erased:
        await repo.update_lead(uow.session, envelope.org_id, row.lead_id, snapshot=snapshot,
                               lead_version=envelope.subject_version, open=_is_open(snapshot),
                               updated_at=uow.clock.now())
        row = await repo.lock_lead(uow.session, envelope.org_id, row.lead_id)
    return row


@EVENT_HANDLERS.on(LeadCreatedV1)
async def on_lead_created(data: LeadCreatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    org, snapshot = envelope.org_id, _snapshot(data.lead)
    # The lead added and the routing configuration read together: a new lead (the usual case) is routed with them.
    row, config = await repo.add_lead_with_routing_config(uow.session, org, snapshot["lead_id"], snapshot,
                                                          uow.clock.now(), lead_version=envelope.subject_version,
                                                          open_=_is_open(snapshot))
    if row is None:  # known already (an update came first, or this is a redelivery): as any newer snapshot
        known = await repo.lock_lead(uow.session, org, snapshot["lead_id"])
        row = await _newer_snapshot(uow, envelope, snapshot, known)
    if row.routed_at is not None:
        log.info("lead_already_routed", lead_id=row.lead_id)
        return
    if config.rule_set is None:
        raise PermanentFailure(f"org {envelope.org_id} has no routing rules: publish a rule set "
                               "(PUT /v1/routing-rules), then replay the parked events")
    decision = await decide(uow.session, envelope.org_id, row.lead_id, row.snapshot, LEAD_CREATED,
                            rule_set=config.rule_set, config=config, now=uow.clock.now(),
                            previous_owner_id=row.owner_id)
    await apply_decision(uow, envelope.org_id, row, decision, source_event_id=str(envelope.id))


@EVENT_HANDLERS.on(LeadUpdatedV1)
async def on_lead_updated(data: LeadUpdatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    org, snapshot = envelope.org_id, _snapshot(data.lead)
    # An owner set by hand in lead-service: followed, so that open-lead counts stay right.
    follows_owner = data.cause != "assignment" and "owner_id" in data.changed
    # The usual case, a newer snapshot of a known lead, in one statement; the others as below.
    row = await repo.take_newer_snapshot(uow.session, org, data.lead.lead_id, snapshot, uow.clock.now(),
                                         lead_version=envelope.subject_version, open_=_is_open(snapshot),
                                         follows_owner=follows_owner, owner_id=data.lead.owner_id)
    before = row
    if row is None:  # not known, stale or erased; or it became known since the update began: as before
        row = before = await repo.lock_lead_with_routing_rules(uow.session, org, data.lead.lead_id)
        if before is None:
            await _take_snapshot(uow, envelope, snapshot)  # first news of this lead: LeadCreated routes it
            return
        if envelope.subject_version <= before.lead_version:
            return  # a stale update
        values: dict[str, Any] = {}
        if not before.erased:
            values.update(snapshot=snapshot, lead_version=envelope.subject_version, open=_is_open(snapshot),
                          updated_at=uow.clock.now())
        if follows_owner and data.lead.owner_id != before.owner_id:
            values["owner_id"] = data.lead.owner_id
        if values:
            row = await repo.update_lead_returning(uow.session, org, before.lead_id, **values)
    if data.cause == "assignment" or row.routed_at is None or not row.open:
        return
    routed_by = repo.routed_by(before)  # the updates above change no routing column
    previous_rule = routed_by.rule(row.rule_id) if routed_by else None
    if previous_rule is None or not previous_rule.reroute_on_update:
        return  # (the newest rule set is read only for a rule that re-routes on updates)
    config = await repo.routing_config(uow.session, org)
    rule_set = config.rule_set
    if rule_set is None:
        return
    fields: set[str] = set()
    for rule in (*rule_set.rules, previous_rule):
        if LEAD_CREATED in rule.triggers:
            fields |= rule.fields
    if not routed_on(fields, data.changed):
        return
    match, territory, _ = match_rules(rule_set, row.snapshot, LEAD_UPDATED, config.territories)
    if match.rule is not None and match.rule.id == row.rule_id and \
            (territory.id if territory else None) == row.territory_id:
        return  # the same rule still routes it: nothing moves
    decision = await decide(uow.session, org, row.lead_id, row.snapshot, LEAD_UPDATED, rule_set=rule_set,
                            config=config, now=uow.clock.now(), previous_owner_id=row.owner_id)
    await apply_decision(uow, org, row, decision, source_event_id=str(envelope.id),
                         publish_route=decision.pipeline_id != row.pipeline_id)


async def _pipeline_event(uow: UnitOfWork, envelope: Envelope, lead_id: str, *, open_: bool | None = None,
                          with_newest_rules: bool = False) -> Any | None:
    """The lead's row once this pipeline event's version (and with `open_`, whether the lead is open) is recorded;
    None for a stale event. `with_newest_rules`: for a hand-off (see `_hand_off`)."""
    row = await repo.see_pipeline_version(uow.session, envelope.org_id, lead_id, envelope.subject_version,
                                          open_=open_, with_newest_rules=with_newest_rules)
    if row is None and await repo.lock_lead(uow.session, envelope.org_id, lead_id) is None:
        raise LeadNotKnownYet(f"lead {lead_id} is not known yet (LeadCreated not handled)")
    return row


async def _hand_off(uow: UnitOfWork, envelope: Envelope, row: Any, trigger: str, stage: dict[str, Any]) -> None:
    """Re-route at a stage entry or a win when a rule of the newest rule set says so; `row` is from
    `_pipeline_event(..., with_newest_rules=True)`: the routing configuration is read only when one of those
    rules has the trigger (then the configuration's own rule set decides, as it may be newer still)."""
    if not any(trigger in r.triggers for r in repo.rules_of(row.newest_rules)):
        return
    config = await repo.routing_config(uow.session, envelope.org_id)
    rule_set = config.rule_set
    if rule_set is None or not any(trigger in r.triggers for r in rule_set.rules):
        return
    decision = await decide(uow.session, envelope.org_id, row.lead_id, row.snapshot, trigger, rule_set=rule_set,
                            config=config, now=uow.clock.now(), stage=stage, previous_owner_id=row.owner_id)
    if decision.rule is None:
        return  # no hand-off rule for this stage
    await apply_decision(uow, envelope.org_id, row, decision, source_event_id=str(envelope.id))


@EVENT_HANDLERS.on(StageAdvancedV1)
async def on_stage_advanced(data: StageAdvancedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    row = await _pipeline_event(uow, envelope, data.lead_id, with_newest_rules=True)
    if row is None:
        return
    if data.reason == "reopened" and not row.open:
        await repo.update_lead(uow.session, envelope.org_id, row.lead_id, open=True)
    await _hand_off(uow, envelope, row, STAGE_ENTRY, {"stage_id": data.to_stage_id,
                                                      "stage_name": data.to_stage_name,
                                                      "pipeline_id": data.pipeline_id})


@EVENT_HANDLERS.on(LeadWonV1)
async def on_lead_won(data: LeadWonV1, envelope: Envelope, uow: UnitOfWork) -> None:
    row = await _pipeline_event(uow, envelope, data.lead_id, open_=False, with_newest_rules=True)
    if row is None:
        return
    await _hand_off(uow, envelope, row, LEAD_WON, {"stage_id": data.stage_id, "stage_name": None,
                                                   "pipeline_id": data.pipeline_id})


@EVENT_HANDLERS.on(LeadLostV1)
async def on_lead_lost(data: LeadLostV1, envelope: Envelope, uow: UnitOfWork) -> None:
    await _pipeline_event(uow, envelope, data.lead_id, open_=False)


@EVENT_HANDLERS.on(LeadReopenedV1)
async def on_lead_reopened(data: LeadReopenedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    await _pipeline_event(uow, envelope, data.lead_id, open_=True)


@EVENT_HANDLERS.on(LeadDisqualifiedV1)
async def on_lead_disqualified(data: LeadDisqualifiedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    row = await repo.lock_lead(uow.session, envelope.org_id, data.lead_id)
    if row is not None and envelope.subject_version > row.lead_version:
        await repo.update_lead(uow.session, envelope.org_id, data.lead_id, open=False,
                               lead_version=envelope.subject_version)


@EVENT_HANDLERS.on(LeadErasedV1)
async def on_lead_erased(data: LeadErasedV1, envelope: Envelope, uow: UnitOfWork) -> None:
    """Keep only what routing needs no personal data for; scrub the lead values quoted in decisions."""
    org = envelope.org_id
    row = await repo.lock_lead(uow.session, org, data.lead_id)
    if row is not None:
        status = (row.snapshot or {}).get("status", "open")
        await repo.update_lead(uow.session, org, data.lead_id, snapshot={"lead_id": data.lead_id, "status": status},
                               erased=True, lead_version=max(row.lead_version, envelope.subject_version))
    for decision_id, explanation in await repo.decision_explanations(uow.session, org, data.lead_id):
        scrubbed = dict(explanation or {})
        scrubbed["evaluations"] = [_scrub(e) for e in scrubbed.get("evaluations", [])]
        await repo.set_explanation(uow.session, decision_id, scrubbed)


def _scrub(evaluation: dict[str, Any]) -> dict[str, Any]:
    failed = evaluation.get("failed_condition")
    if not failed:
        return evaluation
    return {**evaluation, "failed_condition": {**failed, "actual": "[erased]"}}
