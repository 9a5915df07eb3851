"""The service's HTTP API: /v1/payees, /v1/plans, /v1/statements, /v1/disputes, /v1/payouts, /v1/credits."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import CurrentPrincipal, ManagerPrincipal
from salesflow_shared.clock import SystemClock
from salesflow_shared.errors import NotFound
from salesflow_shared.inbox import dialect_insert
from salesflow_shared.pagination import LimitParam

from ..adapters.orm import payees
from ..service_layer import audit

router = APIRouter(prefix="/v1", tags=["incentive-service"])

CURRENCY_PATTERN = r"^[A-Z]{3}$"


def now_of(context: Any) -> datetime:
    return (context.extras.get("clock") or SystemClock()).now()


# ------------------------------------------------------------------ payees
def payee_json(row: Any) -> dict[str, Any]:
    return {"participant_id": row.participant_id, "name": row.name, "email": row.email,
            "team_ids": list(row.team_ids or []), "active": row.active, "currency": row.currency, "role": row.role}


class PayeeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: str = Field(pattern=CURRENCY_PATTERN, description="ISO 4217: the currency they are paid in")
    role: str | None = Field(default=None, min_length=1, max_length=100, description="what plans may cover")
    team_ids: list[str] | None = Field(default=None, description="teams, if not known from the rep directory")


@router.get("/payees", summary="Participants: the rep directory plus the currency each is paid in")
async def list_payees(principal: ManagerPrincipal, uow: UowDep, limit: LimitParam = 100) -> dict[str, Any]:
    rows = (await uow.session.execute(sa.select(payees).where(payees.c.org_id == principal.org_id)
                                      .order_by(payees.c.participant_id).limit(limit))).all()
    return {"items": [payee_json(r) for r in rows], "next_cursor": None}


@router.get("/payees/{participant_id}", summary="One participant (a rep sees only themselves)")
async def get_payee(participant_id: str, principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    if not principal.sees_whole_org and participant_id != principal.user_id:
        raise NotFound(f"no payee {participant_id}")
    row = (await uow.session.execute(sa.select(payees).where(
        payees.c.org_id == principal.org_id, payees.c.participant_id == participant_id))).first()
    if row is None:
        raise NotFound(f"no payee {participant_id}")
    return payee_json(row)


@router.put("/payees/{participant_id}", summary="Set a participant's payout currency and role")
async def put_payee(participant_id: str, body: PayeeIn, principal: ManagerPrincipal, uow: UowDep,
                    context: ContextDep) -> dict[str, Any]:
    now = now_of(context)
    before = (await uow.session.execute(sa.select(payees).where(
        payees.c.org_id == principal.org_id, payees.c.participant_id == participant_id))).first()
    values: dict[str, Any] = {"currency": body.currency, "role": body.role, "updated_at": now}
    if body.team_ids is not None:
        values["team_ids"] = body.team_ids
    insert = dialect_insert(uow.session)
    await uow.session.execute(insert(payees).values(
        org_id=principal.org_id, participant_id=participant_id, team_ids=body.team_ids or [], **values,
    ).on_conflict_do_update(index_elements=["org_id", "participant_id"], set_=values))
    row = (await uow.session.execute(sa.select(payees).where(
        payees.c.org_id == principal.org_id, payees.c.participant_id == participant_id))).one()
    await audit.record(uow, principal.org_id, principal.user_id, now, "payee_set", "payee", participant_id,
                       payee_json(before) if before else None, payee_json(row))
    await uow.commit()
    return payee_json(row)
