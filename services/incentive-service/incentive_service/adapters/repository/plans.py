"""Plan versions as stored: each version's document and the dates it is in force."""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ...domain.plans import Plan
from ..orm import plans


@dataclass(frozen=True)
class PlanRow:
    org_id: str
    plan_id: str
    version: int
    name: str
    document: dict[str, Any]
    effective_from: date
    effective_to: date | None
    retired: bool
    created_by: str
    created_at: datetime


_PLAN_FIELDS = tuple(f.name for f in fields(PlanRow))


async def _plan_rows(session: AsyncSession, query: sa.Select[Any]) -> list[PlanRow]:
    return [PlanRow(*(getattr(r, name) for name in _PLAN_FIELDS)) for r in (await session.execute(query)).all()]


async def plan_version(session: AsyncSession, org_id: str, plan_id: str, version: int | None = None) -> PlanRow | None:
    """That version of the plan, or its newest."""
    query = sa.select(plans).where(plans.c.org_id == org_id, plans.c.plan_id == plan_id)
    query = query.where(plans.c.version == version) if version is not None else \
        query.order_by(plans.c.version.desc()).limit(1)
    found = await _plan_rows(session, query)
    return found[0] if found else None


async def plan_versions(session: AsyncSession, org_id: str, plan_id: str | None = None) -> list[PlanRow]:
    """Every version of the org's plans (or of one), by plan and version."""
    query = sa.select(plans).where(plans.c.org_id == org_id)
    if plan_id is not None:
        query = query.where(plans.c.plan_id == plan_id)
    return await _plan_rows(session, query.order_by(plans.c.plan_id, plans.c.version))


async def insert_plan_version(session: AsyncSession, org_id: str, plan_id: str, version: int, plan: Plan,
                              created_by: str, created_at: datetime) -> None:
    await session.execute(sa.insert(plans).values(
        org_id=org_id, plan_id=plan_id, version=version, name=plan.name, document=plan.to_json(),
        effective_from=plan.effective_from, effective_to=plan.effective_to, created_by=created_by,
        created_at=created_at))


async def end_plan_version(session: AsyncSession, org_id: str, plan_id: str, version: int,
                           ends_on: date | None) -> None:
    """The version is in force until `ends_on` (exclusive); None: it never was (retired: replaced entirely)."""
    await session.execute(sa.update(plans).where(
        plans.c.org_id == org_id, plans.c.plan_id == plan_id, plans.c.version == version).values(
        **({"retired": True} if ends_on is None else {"effective_to": ends_on})))
