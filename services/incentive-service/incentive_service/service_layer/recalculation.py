"""Queueing recalculations: what changed is noted in `recalculation_queue` in the transaction that changed it;
the recalculation worker (service_layer/statements.py) turns each note into the statements it affects."""
from __future__ import annotations

from datetime import date, datetime

from salesflow_shared.uow import UnitOfWork

from ..adapters.repository.recalculation import queue_recalculation

WHOLE_ORG = "*"


async def _queue(uow: UnitOfWork, org_id: str, kind: str, subject_id: str, on_date: date, reason: str,
                 now: datetime) -> None:
    await queue_recalculation(uow.session, org_id, kind, subject_id, on_date, reason, now)


async def queue_for_lead(uow: UnitOfWork, org_id: str, lead_id: str, reason: str, now: datetime) -> None:
    """A deal's outcome or attributes changed: every statement it is credited on (and the current ones)."""
    await _queue(uow, org_id, "lead", lead_id, date.min, reason, now)


async def queue_for_participant(uow: UnitOfWork, org_id: str, participant_id: str, start: date, end: date,
                                reason: str, now: datetime) -> None:
    """A participant's input (quota, payee currency, adjustment) changed for dates in [start, end)."""
    await _queue(uow, org_id, "participant", participant_id, start, reason, now)


async def queue_open_statements(uow: UnitOfWork, org_id: str, from_date: date | None, reason: str,
                                now: datetime) -> None:
    """Something every statement may use changed (a rate, the org currency, a plan): all open statements."""
    await _queue(uow, org_id, "org", WHOLE_ORG, from_date or date.min, reason, now)
