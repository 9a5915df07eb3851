"""Logging activities against a lead (calls, emails, meetings, demos, proposals, notes)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from salesflow_shared.events import ActivityLoggedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import activities
from .ingest import new_id
from .views import iso


def activity_to_dict(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "lead_id": m["lead_id"], "kind": m["kind"], "rep_id": m["rep_id"],
            "occurred_at": iso(m["occurred_at"]), "duration_seconds": m["duration_seconds"],
            "outcome": m["outcome"], "subject": m["subject"], "notes": m["notes"], "source": m["source"],
            "created_at": iso(m["created_at"])}


async def log_activity(uow: UnitOfWork, org_id: str, lead_id: str, *, kind: str, rep_id: str | None,
                       occurred_at: datetime, now: datetime, duration_seconds: int | None = None,
                       outcome: str | None = None, subject: str | None = None, notes: str | None = None,
                       source: str = "rep", external_id: str | None = None,
                       announce: bool = True) -> dict[str, Any]:
    """Record the activity on the lead's timeline and, unless `announce` is False (a note for the record only,
    not a sales activity: no goal, report or sequence should count it), publish ActivityLogged."""
    activity_id = new_id()
    row = {"id": activity_id, "org_id": org_id, "lead_id": lead_id, "kind": kind, "rep_id": rep_id,
           "occurred_at": occurred_at, "duration_seconds": duration_seconds, "outcome": outcome,
           "subject": subject, "notes": notes, "source": source, "external_id": external_id, "created_at": now}
    await uow.session.execute(sa.insert(activities).values(**row))
    if announce:
            uow.publish(ActivityLoggedV1(activity_id=activity_id, lead_id=lead_id, kind=kind, rep_id=rep_id,
                                     occurred_at=occurred_at, duration_seconds=duration_seconds, outcome=outcome,
                                     subject=subject, source=source),
                    org_id=org_id, subject_id=activity_id)
    return {**row, "occurred_at": iso(occurred_at), "created_at": iso(now)}
