"""Plans: creating them and their versions (validated, never overlapping for a participant), with the audit log and
a recalculation of every statement from the date the change takes effect."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from salesflow_shared.clock import rfc3339
from salesflow_shared.errors import FieldError, NotFound, ValidationFailed
from salesflow_shared.preconditions import check_if_match, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import plans as stored
from ..adapters.repository import sources as repo
from ..adapters.repository.plans import PlanRow
from ..domain.plans import Plan, PlanProblems, overlap_problems, parse_plan
from . import audit, recalculation


def parse_or_422(raw: Any) -> Plan:
    try:
        return parse_plan(raw)
    except PlanProblems as exc:
        raise ValidationFailed("the plan does not make sense: " + str(exc),
                               errors=[FieldError(path, message) for path, message in exc.problems]) from exc


def plan_json(row: Any) -> dict[str, Any]:
    return {"plan_id": row.plan_id, "version": row.version, "name": row.name,
            "effective_from": row.effective_from.isoformat(),
            "effective_to": row.effective_to.isoformat() if row.effective_to else None, "retired": row.retired,
            "created_by": row.created_by, "created_at": rfc3339(row.created_at), "document": row.document}


async def _check_overlaps(uow: UnitOfWork, org_id: str, plan: Plan, plan_id: str | None) -> None:
    others = [v for v in await repo.load_plans(uow.session, org_id) if v.plan_id != plan_id]
    members = {p.participant_id: (p.team_ids, p.role) for p in (await repo.load_payees(uow.session, org_id)).values()}
    problems = overlap_problems(plan, plan_id, others, members)
    if problems:
        raise ValidationFailed("the plan overlaps another one for the same participants: " + problems[0][1],
                               errors=[FieldError(path, message) for path, message in problems])


async def _row(uow: UnitOfWork, org_id: str, plan_id: str, version: int | None = None) -> PlanRow:
    row = await stored.plan_version(uow.session, org_id, plan_id, version)
    if row is None:
        raise NotFound(f"no plan {plan_id}" + (f" version {version}" if version is not None else ""))
    return row


async def create_plan(uow: UnitOfWork, org_id: str, raw: Any, actor: str, now: datetime) -> dict[str, Any]:
    plan = parse_or_422(raw)
    await _check_overlaps(uow, org_id, plan, None)
    plan_id = str(uuid.uuid4())
    await stored.insert_plan_version(uow.session, org_id, plan_id, 1, plan, actor, now)
    row = await _row(uow, org_id, plan_id)
    await audit.record(uow, org_id, actor, now, "plan_created", "plan", plan_id, None, plan_json(row))
    await recalculation.queue_open_statements(uow, org_id, plan.effective_from, "plan_changed", now)
    return plan_json(row)


async def new_version(uow: UnitOfWork, org_id: str, plan_id: str, raw: Any, actor: str, now: datetime,
                      if_match: str | None) -> dict[str, Any]:
    """A new version in force from its effective_from: the previous one ends there (or is replaced entirely when
    the new one starts no later than it). Statements already seen get new versions, not silent rewrites.
    `if_match` must be the newest version's ETag (428 without it, 412 when another version came since)."""
    previous = await _row(uow, org_id, plan_id)
    check_if_match(if_match, strong_etag(previous.version), what="plan")
    plan = parse_or_422(raw)
    await _check_overlaps(uow, org_id, plan, plan_id)
    replaces = plan.effective_from <= previous.effective_from
    await stored.end_plan_version(uow.session, org_id, plan_id, previous.version,
                                  None if replaces else plan.effective_from)
    await stored.insert_plan_version(uow.session, org_id, plan_id, previous.version + 1, plan, actor, now)
    row = await _row(uow, org_id, plan_id)
    await audit.record(uow, org_id, actor, now, "plan_versioned", "plan", plan_id, plan_json(previous), plan_json(row))
    await recalculation.queue_open_statements(uow, org_id, min(plan.effective_from, previous.effective_from),
                                              "plan_changed", now)
    return plan_json(row)


async def get_plan(uow: UnitOfWork, org_id: str, plan_id: str, version: int | None = None) -> dict[str, Any]:
    return plan_json(await _row(uow, org_id, plan_id, version))


async def list_plans(uow: UnitOfWork, org_id: str) -> list[dict[str, Any]]:
    latest: dict[str, PlanRow] = {}
    for row in await stored.plan_versions(uow.session, org_id):
        latest[row.plan_id] = row
    return [plan_json(r) for r in sorted(latest.values(), key=lambda r: (r.effective_from, r.name, r.plan_id))]


async def versions_of(uow: UnitOfWork, org_id: str, plan_id: str) -> list[dict[str, Any]]:
    await _row(uow, org_id, plan_id)
    return [plan_json(r) for r in await stored.plan_versions(uow.session, org_id, plan_id)]

