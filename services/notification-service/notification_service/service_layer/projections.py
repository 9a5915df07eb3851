"""What this service knows of leads and reps, kept from events (contracts.md): stale events are ignored by
comparing `subject_version` within one producer's stream (lead-service for the lead's fields and status,
pipeline-service for its stage and outcome)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.events import LeadSnapshot

from ..adapters import repository
from ..adapters.repository import LeadFollowUps
from ..domain.leads import KnownLead
from ..domain.sequences import LeadState


def _snapshot_values(lead: LeadSnapshot) -> dict[str, Any]:
    values = {
        "email": lead.contact.email, "first_name": lead.contact.first_name, "last_name": lead.contact.last_name,
        "company": lead.company.name, "title": lead.contact.title, "phone": lead.contact.phone,
        "country": lead.country, "timezone": lead.timezone, "language": lead.language,
        "product_line": lead.product_line, "value": lead.value, "currency": lead.currency, "source": lead.source,
        "form_id": lead.form_id, "custom_fields": lead.custom_fields or {}, "status": lead.status,
        "owner_id": lead.owner_id,
    }
    if lead.owner_id is None:  # LeadAssigned may have told us the owner before lead-service's snapshot did
        del values["owner_id"]
    return values


async def ensure_lead(session: AsyncSession, org_id: str, lead_id: str, now: datetime) -> KnownLead:
    """The lead's row, locked; created empty when events about it arrive before LeadCreated."""
    return await repository.lock_lead(session, org_id, lead_id, now)


async def apply_snapshot(session: AsyncSession, org_id: str, lead: LeadSnapshot, version: int, now: datetime, *,
                         trigger: str | None) -> tuple[KnownLead, LeadFollowUps] | None:
    """Store the snapshot when newer than what we hold, in one statement that locks the lead's row and reads the
    lead's follow-ups for `trigger` (None: a fact that starts no sequence): the row as it now is and its follow-ups,
    or None for a stale event or an erased lead (left as it was, nothing read)."""
    return await repository.store_newer_snapshot_reading_follow_ups(session, org_id, lead.lead_id, {
        **_snapshot_values(lead), "lead_version": version, "updated_at": now}, trigger)


async def store_snapshot(session: AsyncSession, org_id: str, lead: LeadSnapshot, version: int, now: datetime, *,
                         trigger: str | None) -> tuple[KnownLead, LeadFollowUps]:
    """`apply_snapshot`, or, when the snapshot was not stored (stale, or the lead is erased), the row as it is and
    the follow-ups read after it."""
    stored = await apply_snapshot(session, org_id, lead, version, now, trigger=trigger)
    if stored is not None:
        return stored
    row = await ensure_lead(session, org_id, lead.lead_id, now)
    return row, await repository.lead_follow_ups(session, org_id, lead.lead_id, trigger)


async def apply_pipeline_change(session: AsyncSession, org_id: str, lead_id: str, version: int, now: datetime,
                                **values: Any) -> tuple[KnownLead, KnownLead] | None:
    """Record a pipeline-service fact (stage, outcome) when newer: the row before and after the change, or None if
    stale."""
    row = await ensure_lead(session, org_id, lead_id, now)
    if version <= row.pipeline_version:
        return None
    return row, await repository.update_lead(session, org_id, lead_id,
                                             {**values, "pipeline_version": version, "updated_at": now})


async def set_lead_fields(session: AsyncSession, org_id: str, lead_id: str, now: datetime,
                          **values: Any) -> KnownLead:
    """Write these fields whatever the lead's versions; the row after."""
    await ensure_lead(session, org_id, lead_id, now)
    return await repository.update_lead(session, org_id, lead_id, {**values, "updated_at": now})


@dataclass(frozen=True)
class StageEntry:
    """What `enter_stage` did: the lead's row before and after, and, when the move was newer than what was held,
    what the stage entry may change (`follow_ups`; None: the lead is elsewhere now)."""
    before: KnownLead
    after: KnownLead
    follow_ups: LeadFollowUps | None


async def enter_stage(session: AsyncSession, org_id: str, lead_id: str, version: int, now: datetime, *,
                      pipeline_id: str, stage_id: str, stage_ids: list[str] | None, owner_id: str | None,
                      values: dict[str, Any]) -> StageEntry:
    """The lead entered the stage: remembered whatever the event's age (the stages entered are a set), with the
    pipeline's stages when the event lists them; when the move is newer than what we hold, also its `values`
    (stage, outcome) and the owner it names, and the lead's follow-ups for a stage entry read (by the statement that
    writes, on PostgreSQL). One statement to lock, one to write, whatever changes."""
    row, pipeline_defined = await repository.lock_lead_in_pipeline(session, org_id, lead_id, pipeline_id, now)
    changes: dict[str, Any] = {}
    entered = [list(e) for e in row.entered_stages or []]
    if [pipeline_id, stage_id] not in entered:
        changes["entered_stages"] = [*entered, [pipeline_id, stage_id]]
    follow_ups = None
    if version > row.pipeline_version:
        changes.update(values, pipeline_version=version, **({"owner_id": owner_id} if owner_id else {}))
        after, follow_ups = await repository.update_lead_reading_follow_ups(
            session, org_id, lead_id, {**changes, "updated_at": now}, "stage_entry")
    elif changes:
        after = await repository.update_lead(session, org_id, lead_id, {**changes, "updated_at": now})
    else:
        after = row
    if stage_ids and not pipeline_defined:  # only until the pipeline's own definition (PipelineDefined) arrives
        await repository.save_pipeline_stages(session, org_id, pipeline_id, stage_ids, now)
    return StageEntry(before=row, after=after, follow_ups=follow_ups)


ERASED_FIELDS = {name: None for name in ("email", "first_name", "last_name", "company", "title", "phone",
                                         "country", "timezone", "custom_fields", "won_notes")}


def lead_state(row: KnownLead) -> LeadState:
    status = row.status
    if status != "disqualified" and row.outcome:
        status = row.outcome
    return LeadState(status=status, stage_id=row.stage_id, unsubscribed=bool(row.unsubscribed),
                     erased=bool(row.erased))
