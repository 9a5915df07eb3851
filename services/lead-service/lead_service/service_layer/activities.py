"""Logging activities against a lead (calls, emails, meetings, demos, proposals, notes)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from salesflow_shared.events import ActivityLoggedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import new_id
from ..adapters.repository.records import insert_activities, insert_external_activity
from ..domain.activity import Activity
from ..domain.times import iso


def activity_to_dict(activity: Activity) -> dict[str, Any]:
    """The activity as the API shows it."""
    a = activity
    return {"id": a.id, "lead_id": a.lead_id, "kind": a.kind, "rep_id": a.rep_id,
            "occurred_at": iso(a.occurred_at), "duration_seconds": a.duration_seconds,
            "outcome": a.outcome, "subject": a.subject, "notes": a.notes, "source": a.source,
            "created_at": iso(a.created_at)}


async def log_activity(uow: UnitOfWork, org_id: str, lead_id: str, *, kind: str, rep_id: str | None,
                       occurred_at: datetime, now: datetime, duration_seconds: int | None = None,
                       outcome: str | None = None, subject: str | None = None, notes: str | None = None,
                       source: str = "rep", external_id: str | None = None,
                       announce: bool = True) -> Activity:
    """Record the activity on the lead's timeline and, unless `announce` is False (a note for the record only,
    not a sales activity: no goal, report or sequence should count it), publish ActivityLogged."""
    activity = Activity(id=new_id(), lead_id=lead_id, kind=kind, rep_id=rep_id, occurred_at=occurred_at,
                        duration_seconds=duration_seconds, outcome=outcome, subject=subject, notes=notes,
                        source=source, created_at=now)
    await insert_activities(uow.session, org_id, [activity], external_id=external_id)
    if announce:
        _announce(uow, org_id, activity)
    return activity


async def log_external_activity(uow: UnitOfWork, org_id: str, lead_id: str, *, external_id: str, kind: str,
                                rep_id: str | None, occurred_at: datetime, now: datetime, source: str,
                                subject: str | None = None, outcome: str | None = None) -> bool:
    """`log_activity` of an activity known by its id elsewhere (e.g. an email delivery), once: False, with
    nothing recorded or published, when it is stored already (the same activity reported twice)."""
    activity = Activity(id=new_id(), lead_id=lead_id, kind=kind, rep_id=rep_id, occurred_at=occurred_at,
                        duration_seconds=None, outcome=outcome, subject=subject, notes=None, source=source,
                        created_at=now)
    if not await insert_external_activity(uow.session, org_id, activity, external_id):
        return False
    _announce(uow, org_id, activity)
    return True


def _announce(uow: UnitOfWork, org_id: str, activity: Activity) -> None:
    a = activity
    uow.publish(ActivityLoggedV1(activity_id=a.id, lead_id=a.lead_id, kind=a.kind, rep_id=a.rep_id,
                                 occurred_at=a.occurred_at, duration_seconds=a.duration_seconds, outcome=a.outcome,
                                 subject=a.subject, source=a.source),
                org_id=org_id, subject_id=a.id)
