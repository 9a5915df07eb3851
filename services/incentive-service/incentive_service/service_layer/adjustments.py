"""Adjustments (a manager's correction, or an accepted dispute) and disputes of statement lines.

An adjustment lands on the participant's statement for the period it names if that one is still open, else on
their first open period after it (a locked statement never changes). It is a line with its reason and author.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from salesflow_shared.clock import rfc3339
from salesflow_shared.errors import Conflict, NotFound, ValidationFailed
from salesflow_shared.events import DisputeOpenedV1, DisputeResolvedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import disputes as disputing
from ..adapters.repository import sources as repo
from ..adapters.repository.disputes import DisputeRow
from . import audit, recalculation
from .statements import CLOSED, OrgData, get_statement_row


async def landing_period(uow: UnitOfWork, org_id: str, participant_id: str, start: date) -> date:
    """The period an adjustment for `start` lands on: it, or the first period after it that is not locked."""
    history = {s.period_start: s for s in await repo.participant_statements(uow.session, org_id, participant_id)}
    data = await OrgData.load(uow, org_id)
    current = start
    for _ in range(120):
        row = history.get(current)
        if row is None or row.status not in CLOSED:
            return current
        period = data.period_of(participant_id, row.period_end)
        current = period[0] if period is not None else row.period_end
    raise Conflict("no open period to put the adjustment on")


async def add_adjustment(uow: UnitOfWork, org_id: str, statement_id: str, amount: Decimal, reason: str, author: str,
                         now: datetime, dispute_id: str | None = None) -> dict[str, Any]:
    statement = await get_statement_row(uow, org_id, statement_id)
    target = await landing_period(uow, org_id, statement.participant_id, statement.period_start)
    adjustment_id = str(uuid.uuid4())
    values = {"org_id": org_id, "adjustment_id": adjustment_id, "participant_id": statement.participant_id,
              "period_start": target, "amount": amount, "currency": statement.plan_currency, "reason": reason,
              "author": author, "dispute_id": dispute_id, "created_at": now}
    await disputing.insert_adjustment(uow.session, values)
    out = adjustment_json(values)
    await audit.record(uow, org_id, author, now, "adjustment_added", "statement", statement_id, None, out)
    await recalculation.queue_for_participant(uow, org_id, statement.participant_id, target,
                                              target + timedelta(days=1), "adjustment", now)
    return out


def adjustment_json(row: Any) -> dict[str, Any]:
    get: Callable[[str], Any] = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    return {"adjustment_id": get("adjustment_id"), "participant_id": get("participant_id"),
            "period_start": get("period_start").isoformat(), "amount": str(get("amount")),
            "currency": get("currency"), "reason": get("reason"), "author": get("author"),
            "dispute_id": get("dispute_id")}


def dispute_json(row: Any) -> dict[str, Any]:
    seconds = (row.resolved_at - row.opened_at).total_seconds() if row.resolved_at else None
    return {"dispute_id": row.dispute_id, "statement_id": row.statement_id, "line_id": row.line_id,
            "participant_id": row.participant_id, "comment": row.comment, "opened_by": row.opened_by,
            "opened_at": rfc3339(row.opened_at), "status": row.status, "resolution": row.resolution,
            "resolved_by": row.resolved_by, "resolved_at": rfc3339(row.resolved_at),
            "adjustment_id": row.adjustment_id, "seconds_to_resolve": seconds}


async def get_dispute(uow: UnitOfWork, org_id: str, dispute_id: str) -> DisputeRow:
    row = await disputing.dispute_of(uow.session, org_id, dispute_id)
    if row is None:
        raise NotFound(f"no dispute {dispute_id}")
    return row


async def open_dispute(uow: UnitOfWork, org_id: str, statement: Any, line_id: str, comment: str, actor: str,
                       now: datetime) -> dict[str, Any]:
    if not await disputing.statement_has_line(uow.session, org_id, statement.statement_id, line_id):
        raise NotFound(f"no line {line_id} on statement {statement.statement_id}")
    dispute_id = str(uuid.uuid4())
    await disputing.insert_dispute(uow.session, org_id, dispute_id, statement.statement_id, line_id,
                                   statement.participant_id, comment, actor, now)
    uow.publish(DisputeOpenedV1(dispute_id=dispute_id, statement_id=statement.statement_id, line_id=line_id,
                                participant_id=statement.participant_id, opened_by=actor, comment=comment,
                                opened_at=now), org_id=org_id, subject_id=dispute_id)
    row = await get_dispute(uow, org_id, dispute_id)
    await audit.record(uow, org_id, actor, now, "dispute_opened", "dispute", dispute_id, None, dispute_json(row))
    return dispute_json(row)


async def resolve_dispute(uow: UnitOfWork, org_id: str, dispute_id: str, outcome: str, resolution: str,
                          amount: Decimal | None, actor: str, now: datetime) -> dict[str, Any]:
    row = await get_dispute(uow, org_id, dispute_id)
    if row.status != "open":
        raise Conflict(f"dispute {dispute_id} is already {row.status}")
    if outcome == "accepted" and (amount is None or amount == 0):
        raise ValidationFailed.single("amount", "an accepted dispute needs the adjustment amount (not 0)")
    adjustment = None
    if outcome == "accepted":
        assert amount is not None
        adjustment = await add_adjustment(uow, org_id, row.statement_id, amount,
                                          f"dispute accepted: {resolution}", actor, now, dispute_id)
    statement = await get_statement_row(uow, org_id, row.statement_id)
    await disputing.resolve_dispute_row(uow.session, org_id, dispute_id, outcome, resolution, actor, now,
                                        adjustment["adjustment_id"] if adjustment else None)
    updated = await get_dispute(uow, org_id, dispute_id)
    out = dispute_json(updated)
    uow.publish(DisputeResolvedV1(
        dispute_id=dispute_id, statement_id=row.statement_id, line_id=row.line_id, participant_id=row.participant_id,
        outcome=outcome, resolution=resolution, adjustment_amount=amount if adjustment else None,
        adjustment_currency=statement.plan_currency if adjustment else None, resolved_by=actor, resolved_at=now,
        seconds_to_resolve=out["seconds_to_resolve"]), org_id=org_id, subject_id=dispute_id, subject_version=2)
    await audit.record(uow, org_id, actor, now, "dispute_resolved", "dispute", dispute_id, dispute_json(row), out)
    return out
