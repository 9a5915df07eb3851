"""What this service knows of leads and reps, kept from events (contracts.md): stale events are ignored by
comparing `subject_version` within one producer's stream (lead-service for the lead's fields and status,
pipeline-service for its stage and outcome)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected
from salesflow_shared.events import LeadSnapshot, RepSnapshot
from salesflow_shared.inbox import dialect_insert

from ..adapters.orm import known_pipelines, leads, reps, task_assignees
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


async def get_lead(session: AsyncSession, org_id: str, lead_id: str, *, for_update: bool = False
                   ) -> dict[str, Any] | None:
    query = sa.select(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row else None


async def ensure_lead(session: AsyncSession, org_id: str, lead_id: str, now: datetime) -> dict[str, Any]:
    """The lead's row, created empty (and locked) when events about it arrive before LeadCreated."""
    insert = dialect_insert(session)
    await session.execute(insert(leads).values(org_id=org_id, lead_id=lead_id, updated_at=now, lead_version=0,
                                               pipeline_version=0, unsubscribed=False, erased=False)
                          .on_conflict_do_nothing(index_elements=["org_id", "lead_id"]))
    row = await get_lead(session, org_id, lead_id, for_update=True)
    assert row is not None
    return row


async def apply_snapshot(session: AsyncSession, org_id: str, lead: LeadSnapshot, version: int,
                         now: datetime) -> bool:
    """Store the snapshot when newer than what we hold; False for a stale (or erased) lead."""
    row = await ensure_lead(session, org_id, lead.lead_id, now)
    if row["erased"] or version <= row["lead_version"]:
        return False
    await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead.lead_id)
                          .values(**_snapshot_values(lead), lead_version=version, updated_at=now))
    return True


async def apply_pipeline_change(session: AsyncSession, org_id: str, lead_id: str, version: int, now: datetime,
                                **values: Any) -> dict[str, Any] | None:
    """Record a pipeline-service fact (stage, outcome) when newer; the row before the change, or None if stale."""
    row = await ensure_lead(session, org_id, lead_id, now)
    if version <= row["pipeline_version"]:
        return None
    await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id)
                          .values(**values, pipeline_version=version, updated_at=now))
    return row


async def set_lead_fields(session: AsyncSession, org_id: str, lead_id: str, now: datetime, **values: Any) -> None:
    await ensure_lead(session, org_id, lead_id, now)
    await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id)
                          .values(**values, updated_at=now))


async def remember_stage(session: AsyncSession, org_id: str, lead_id: str, pipeline_id: str, stage_id: str,
                         stage_ids: list[str] | None, now: datetime) -> None:
    """The lead entered the stage (kept whatever the event's age: the stages entered are a set), and the pipeline's
    stages when the event lists them."""
    row = await ensure_lead(session, org_id, lead_id, now)
    entered = [list(e) for e in row.get("entered_stages") or []]
    if [pipeline_id, stage_id] not in entered:
        await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.lead_id == lead_id)
                              .values(entered_stages=[*entered, [pipeline_id, stage_id]], updated_at=now))
    if stage_ids:
        insert = dialect_insert(session)
        values = {"stage_ids": list(stage_ids), "updated_at": now}
        await session.execute(insert(known_pipelines).values(org_id=org_id, pipeline_id=pipeline_id, **values)
                              .on_conflict_do_update(index_elements=["org_id", "pipeline_id"], set_=values))


async def pipeline_stage_ids(session: AsyncSession, org_id: str) -> dict[str, list[str]]:
    rows = await session.execute(sa.select(known_pipelines).where(known_pipelines.c.org_id == org_id))
    return {r.pipeline_id: list(r.stage_ids or ()) for r in rows}


ERASED_FIELDS = {name: None for name in ("email", "first_name", "last_name", "company", "title", "phone",
                                         "country", "timezone", "custom_fields", "won_notes")}


async def upsert_rep(session: AsyncSession, org_id: str, rep_id: str, now: datetime, *, name: str | None,
                     email: str | None, timezone: str | None) -> None:
    """What a lead assignment says of its owner: kept only until the directory's own entry arrives (a decision
    may be older than the entry)."""
    insert = dialect_insert(session)
    values = {k: v for k, v in {"name": name, "email": email, "timezone": timezone}.items() if v is not None}
    statement = insert(reps).values(org_id=org_id, rep_id=rep_id, updated_at=now, version=0, **values)
    if values:
        statement = statement.on_conflict_do_update(index_elements=["org_id", "rep_id"],
                                                    set_={**values, "updated_at": now}, where=reps.c.version == 0)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["org_id", "rep_id"])
    await session.execute(statement)


async def apply_rep(session: AsyncSession, org_id: str, rep: RepSnapshot, version: int, now: datetime) -> bool:
    """Store assignment-service's directory entry when newer than the one we hold; False for a stale event."""
    insert = dialect_insert(session)
    values = {"name": rep.name, "email": rep.email, "timezone": rep.timezone, "active": rep.active,
              "team_ids": list(rep.team_ids), "working_hours": dict(rep.working_hours), "language": rep.language,
              "version": version, "updated_at": now}
    statement = insert(reps).values(org_id=org_id, rep_id=rep.rep_id, **values).on_conflict_do_update(
        index_elements=["org_id", "rep_id"], set_=values, where=reps.c.version < version)
    return rows_affected(await session.execute(statement)) == 1


async def get_rep(session: AsyncSession, org_id: str, rep_id: str | None) -> dict[str, Any] | None:
    if not rep_id:
        return None
    row = (await session.execute(sa.select(reps).where(reps.c.org_id == org_id, reps.c.rep_id == rep_id))
           ).mappings().first()
    return dict(row) if row else None


async def record_task_assignee(session: AsyncSession, org_id: str, task_id: str, assignee_id: str | None,
                               version: int, now: datetime) -> bool:
    """Remember the task's assignee at `version`; False when as new or newer a version is known (a replayed or
    late event), decided by the upsert itself."""
    insert = dialect_insert(session)
    statement = insert(task_assignees).values(org_id=org_id, task_id=task_id, version=version,
                                              assignee_id=assignee_id, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=["org_id", "task_id"], set_={"version": version, "assignee_id": assignee_id, "updated_at": now},
        where=task_assignees.c.version < version)
    return rows_affected(await session.execute(statement)) == 1


def lead_state(row: dict[str, Any]) -> LeadState:
    status = row.get("status")
    if status != "disqualified" and row.get("outcome"):
        status = row["outcome"]
    return LeadState(status=status, stage_id=row.get("stage_id"), unsubscribed=bool(row.get("unsubscribed")),
                     erased=bool(row.get("erased")))
