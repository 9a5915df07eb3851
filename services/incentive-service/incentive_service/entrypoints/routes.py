"""The service's HTTP API: /v1/payees, /v1/plans, /v1/statements, /v1/disputes, /v1/payouts, /v1/credits.

Managers and admins define plans, see every statement and move them through the workflow; a rep sees their own
statements only once a version was approved, explains its lines, disputes them and asks what-if questions.
"""
from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import CurrentPrincipal, ManagerPrincipal, Principal
from salesflow_shared.clock import rfc3339
from salesflow_shared.contract import CSV_FILE, returns
from salesflow_shared.currency import ExactCurrencyCode
from salesflow_shared.errors import NotFound, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep, once
from salesflow_shared.pagination import LimitParam
from salesflow_shared.preconditions import check_if_match, content_etag, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import payees as paying
from ..adapters.repository import sources as repo
from ..adapters.repository import statements as stored
from ..adapters.repository.audit import audit_entries
from ..adapters.repository.disputes import disputes_of
from ..domain.commissions import Win, compute_statement
from ..domain.money import cents
from ..service_layer import adjustments as adjusting
from ..service_layer import audit, recalculation
from ..service_layer import plans as planning
from ..service_layer import statements as statementing
from . import responses as R

router = APIRouter(prefix="/v1", tags=["incentive-service"])

ParticipantId = Annotated[str, Path(min_length=1, max_length=100, description="the rep's user id")]
LeadId = Annotated[str, Path(min_length=1, max_length=100)]
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)
AMOUNT_PATTERN = r"^-?[0-9]{1,13}(\.[0-9]{1,2})?$"
PLAN_EXAMPLE = {
    "name": "Account executives 2027", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
    "coverage": {"teams": ["inside"]},
    "credit": {"splits": [{"to": "closer", "percent": "80"}, {"to": "sam", "percent": "20"}],
               "overlays": [{"participant": "mia", "teams": ["inside"], "percent": "10"}]},
    "base_rate": "0.08",
    "tiers": {"mode": "marginal", "bands": [{"from": "0", "to": "100", "rate": "0.08"},
                                            {"from": "100", "to": None, "rate": "0.12"}]},
    "cap": "60000", "hurdle": "30",
    "spiffs": [{"name": "Cloud launch", "kind": "product_line", "product_line": "cloud", "amount": "500"}],
    "draw": {"amount": "1500", "recoverable": True}, "clawback": {"days": 90},
}


def now_of(context: Any) -> datetime:
    return context.clock.now()


async def _finish(uow: UnitOfWork, idem: Any, status_code: int, body: Any) -> JSONResponse:
    response = await idem.complete(uow.session, status_code=status_code, body=body)
    await uow.commit()
    return response


# ------------------------------------------------------------------ payees
def payee_json(row: Any) -> dict[str, Any]:
    return {"participant_id": row.participant_id, "name": row.name, "email": row.email,
            "team_ids": list(row.team_ids or []), "active": row.active, "currency": row.currency, "role": row.role}


def payee_etag(row: Any) -> str:
    """A payee has no version column (the directory events and PUT both change it), so its strong ETag is a
    digest of what it answers: any change a reader could see changes it."""
    return content_etag(payee_json(row))


class PayeeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: ExactCurrencyCode = Field(description="ISO 4217: the currency they are paid in")
    role: str | None = Field(default=None, min_length=1, max_length=100, description="what plans may cover")
    team_ids: list[str] | None = Field(default=None, description="teams, if not known from the rep directory")


@router.get("/payees", summary="Participants: the rep directory plus the currency each is paid in",
            operation_id="listPayees", **returns(R.PayeePage))
async def list_payees(principal: ManagerPrincipal, uow: UowDep, limit: LimitParam = 100) -> dict[str, Any]:
    rows = await paying.payee_rows(uow.session, principal.org_id, limit)
    return {"items": [payee_json(r) for r in rows], "next_cursor": None}


@router.get("/payees/{participant_id}", summary="One participant (a rep sees only themselves)",
            operation_id="getPayee", **returns(R.PayeeOut))
async def get_payee(participant_id: ParticipantId, principal: CurrentPrincipal, uow: UowDep) -> JSONResponse:
    if not principal.sees_whole_org and participant_id != principal.user_id:
        raise NotFound(f"no payee {participant_id}")
    row = await paying.payee_row(uow.session, principal.org_id, participant_id)
    if row is None:
        raise NotFound(f"no payee {participant_id}")
    return JSONResponse(payee_json(row), headers={"ETag": payee_etag(row)})


@router.put("/payees/{participant_id}", summary="Set a participant's payout currency and role (If-Match: the "
            "ETag read, or \"0\" for a participant not known yet)",
            operation_id="putPayee", **returns(R.PayeeOut, etag=True))
async def put_payee(participant_id: ParticipantId, body: PayeeIn, principal: ManagerPrincipal, uow: UowDep,
                    context: ContextDep, if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    now = now_of(context)
    before = await paying.payee_row(uow.session, principal.org_id, participant_id, for_update=True)
    check_if_match(if_match, None if before is None else payee_etag(before), what="payee")
    values: dict[str, Any] = {"currency": body.currency, "role": body.role, "updated_at": now}
    if body.team_ids is not None:
        values["team_ids"] = body.team_ids
    await paying.set_payee(uow.session, principal.org_id, participant_id, values)
    row = await paying.payee_row(uow.session, principal.org_id, participant_id)
    assert row is not None  # just written
    await audit.record(uow, principal.org_id, principal.user_id, now, "payee_set", "payee", participant_id,
                       payee_json(before) if before else None, payee_json(row))
    await uow.commit()
    return JSONResponse(payee_json(row), headers={"ETag": payee_etag(row)})


# ------------------------------------------------------------------ plans
@router.post("/plans", status_code=201, summary="Define a plan (version 1); 422 names what does not make sense",
             operation_id="createPlan", **returns(R.PlanOut, status=201, checked_beyond_schema=("*",)),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"type": "object"}, "example": PLAN_EXAMPLE}}}})
async def create_plan(principal: ManagerPrincipal, uow: UowDep, context: ContextDep, idem: IdempotencyDep,
                      body: Annotated[Any, Body()]) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope="plans", payload=body)):
        return replay
    out = await planning.create_plan(uow, principal.org_id, body, principal.user_id, now_of(context))
    return await _finish(uow, idem, 201, out)


@router.get("/plans", summary="Plans (their newest versions)",
            operation_id="listPlans", **returns(R.PlanPage))
async def list_plans(principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    return {"items": await planning.list_plans(uow, principal.org_id), "next_cursor": None}


@router.get("/plans/{plan_id}", summary="A plan's newest version",
            operation_id="getPlan", **returns(R.PlanOut))
async def get_plan(plan_id: str, principal: CurrentPrincipal, uow: UowDep) -> JSONResponse:
    out = await planning.get_plan(uow, principal.org_id, plan_id)
    return JSONResponse(out, headers={"ETag": strong_etag(out["version"])})


@router.put("/plans/{plan_id}", summary="A new version of the plan, in force from its effective_from (If-Match)",
            operation_id="putPlan", **returns(R.PlanOut, etag=True, checked_beyond_schema=("*",)),
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "object"}, "example": PLAN_EXAMPLE}}}})
async def put_plan(plan_id: str, principal: ManagerPrincipal, uow: UowDep, context: ContextDep,
                   body: Annotated[Any, Body()], if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    out = await planning.new_version(uow, principal.org_id, plan_id, body, principal.user_id, now_of(context),
                                     if_match)
    await uow.commit()
    return JSONResponse(out, headers={"ETag": strong_etag(out["version"])})


@router.get("/plans/{plan_id}/versions", summary="Every version of a plan, oldest first",
            operation_id="planVersions", **returns(R.PlanPage))
async def plan_versions(plan_id: str, principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    return {"items": await planning.versions_of(uow, principal.org_id, plan_id), "next_cursor": None}


@router.get("/plans/{plan_id}/versions/{version}", summary="One version of a plan",
            operation_id="planVersion", **returns(R.PlanOut))
async def plan_version(plan_id: str, version: Annotated[int, Path(ge=1, le=1_000_000)], principal: CurrentPrincipal,
                       uow: UowDep) -> dict[str, Any]:
    return await planning.get_plan(uow, principal.org_id, plan_id, version)


# ------------------------------------------------------------------ statements
def statement_json(row: Any) -> dict[str, Any]:
    def at(value: datetime | None) -> str | None:
        return rfc3339(value)

    return {"statement_id": row.statement_id, "participant_id": row.participant_id,
            "period_start": row.period_start.isoformat(), "period_end": row.period_end.isoformat(),
            "version": row.version, "status": row.status, "plan_currency": row.plan_currency,
            "total": str(row.total), "payout_currency": row.payout_currency, "payout": str(row.payout),
            "summary": row.summary, "reason": row.reason, "computed_at": at(row.computed_at),
            "reviewed_by": row.reviewed_by, "reviewed_at": at(row.reviewed_at), "approved_by": row.approved_by,
            "approved_at": at(row.approved_at), "locked_by": row.locked_by, "locked_at": at(row.locked_at),
            "paid_by": row.paid_by, "paid_at": at(row.paid_at), "payment_reference": row.payment_reference}


def line_json(row: Any) -> dict[str, Any]:
    return {"line_id": row.line_id, "seq": row.seq, "kind": row.kind, "key": row.key, "lead_id": row.lead_id,
            "plan_id": row.plan_id, "plan_version": row.plan_version, "rule": row.rule, "amount": str(row.amount),
            "description": row.description, "reason": row.reason, "author": row.author}


async def visible_statement(uow: UnitOfWork, principal: Principal, statement_id: str) -> Any:
    """A rep reaches only their own statements, and only versions that were approved."""
    row = await stored.statement_of(uow.session, principal.org_id, statement_id)
    if row is None or (not principal.sees_whole_org and (
            row.participant_id != principal.user_id or row.approved_at is None)):
        raise NotFound(f"no statement {statement_id}")
    return row


async def full_statement(uow: UnitOfWork, row: Any) -> dict[str, Any]:
    lines = await repo.statement_lines_of(uow.session, row.org_id, row.statement_id)
    found = await disputes_of(uow.session, row.org_id, statement_id=row.statement_id)
    return {**statement_json(row), "lines": [line_json(line) for line in lines],
            "disputes": [adjusting.dispute_json(d) for d in found],
            "open_disputes": sum(1 for d in found if d.status == "open")}


class ComputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on: date | None = Field(default=None, ge=FIRST_DAY, le=LAST_DAY, description="a day of the period (default: today)")
    participant_id: str | None = Field(default=None, min_length=1, max_length=100)


@router.post("/statements/compute", summary="Compute the statements of a period now (all participants or one)",
             operation_id="computeStatements", **returns(R.StatementsComputed, checked_beyond_schema=("on",)))
async def compute_statements(principal: ManagerPrincipal, uow: UowDep, context: ContextDep, idem: IdempotencyDep,
                             body: ComputeIn | None = None) -> JSONResponse:
    body = body or ComputeIn()
    now = now_of(context)
    on = body.on or now.date()

    async def compute() -> dict[str, Any]:
        data = await statementing.OrgData.load(uow, principal.org_id)
        people = [body.participant_id] if body.participant_id else sorted(
            set(data.payees) | {p for v in data.plans for p in v.plan.coverage.participants} | data.named)
        targets = {}
        for participant in people:
            period = data.period_of(participant, on)
            if period is not None:
                targets[(participant, period[0])] = "recalculation"
        outcomes = await statementing.recompute_many(uow, data, targets, now)
        return {"on": on.isoformat(), "outcomes": outcomes}

    return await once(idem, uow, org_id=principal.org_id, scope="statements:compute",
                      payload=body.model_dump(mode="json"), act=compute)


@router.get("/statements", summary="Statements (a rep: their own approved ones)",
            operation_id="listStatements", **returns(R.StatementPage))
async def list_statements(principal: CurrentPrincipal, uow: UowDep, limit: LimitParam = 100,
                          period_start: date | None = None, participant_id: str | None = None,
                          status: str | None = None, all_versions: bool = False) -> dict[str, Any]:
    if not principal.sees_whole_org:
        rows = await stored.statements_of(uow.session, principal.org_id, participant_id=principal.user_id,
                                          period_start=period_start or None, approved_only=True)
    else:
        rows = await stored.statements_of(uow.session, principal.org_id, participant_id=participant_id or None,
                                          period_start=period_start or None)
    if not all_versions:  # the newest (visible) version of each statement
        newest: dict[tuple[str, date], Any] = {}
        for row in rows:
            newest[(row.participant_id, row.period_start)] = row
        rows = list(newest.values())
    if status:
        rows = [r for r in rows if r.status == status]
    return {"items": [statement_json(r) for r in rows[:limit]], "next_cursor": None}


@router.get("/statements/{statement_id}", summary="A statement with its lines and disputes",
            operation_id="getStatement", **returns(R.StatementDetail))
async def get_statement(statement_id: str, principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    return await full_statement(uow, await visible_statement(uow, principal, statement_id))


@router.get("/statements/{statement_id}/versions", summary="Every version of this participant's statement for the "
            "period (a rep: the approved ones)", operation_id="statementVersions", **returns(R.StatementPage))
async def statement_versions(statement_id: str, principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    row = await visible_statement(uow, principal, statement_id)
    rows = await stored.statements_of(uow.session, principal.org_id, participant_id=row.participant_id,
                                      period_start=row.period_start, approved_only=not principal.sees_whole_org)
    return {"items": [statement_json(r) for r in rows], "next_cursor": None}


@router.get("/statements/{statement_id}/lines/{line_id}/explain", summary="How this amount was calculated",
            operation_id="explainLine", **returns(R.LineExplanation))
async def explain_line(statement_id: str, line_id: str, principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    row = await visible_statement(uow, principal, statement_id)
    line = next((stored for stored in await repo.statement_lines_of(uow.session, principal.org_id, statement_id)
                 if stored.line_id == line_id), None)
    if line is None:
        raise NotFound(f"no line {line_id} on statement {statement_id}")
    return {**line_json(line), "currency": row.plan_currency, "steps": list(line.steps or [])}


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_reference: str | None = Field(default=None, min_length=1, max_length=200)


def _statement_action(action: str) -> Callable[..., Awaitable[JSONResponse]]:
    async def move_statement(statement_id: str, principal: ManagerPrincipal, uow: UowDep, context: ContextDep,
                             idem: IdempotencyDep, body: TransitionIn | None = None) -> JSONResponse:
        async def move() -> dict[str, Any]:
            row = await statementing.transition(uow, principal.org_id, statement_id, action, principal.user_id,
                                                now_of(context),
                                                payment_reference=body.payment_reference if body else None)
            return await full_statement(uow, row)

        return await once(idem, uow, org_id=principal.org_id, scope=f"statement-{action}:{statement_id}",
                          payload=body.model_dump(mode="json") if body else None, act=move)
    move_statement.__name__ = f"{action}_statement"
    return move_statement


for _action, _summary in (("review", "Mark a computed statement reviewed"),
                          ("approve", "Approve a reviewed statement (its participant sees it from now on)"),
                          ("lock", "Lock an approved statement for payroll (immutable from now on)"),
                          ("pay", "Mark a locked statement paid")):
    router.add_api_route(f"/statements/{{statement_id}}/{_action}", _statement_action(_action), methods=["POST"],
                         summary=_summary, operation_id=f"{_action}Statement", **returns(R.StatementDetail))


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: str = Field(pattern=AMOUNT_PATTERN, description="in the statement's plan currency; negative takes back")
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/statements/{statement_id}/adjustments", status_code=201,
             summary="Add an adjustment line (on this statement, or the next open one if it is locked)",
             operation_id="addAdjustment", **returns(R.AdjustmentOut, status=201))
async def add_adjustment(statement_id: str, body: AdjustmentIn, principal: ManagerPrincipal, uow: UowDep,
                         context: ContextDep, idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope="adjustments",
                                   payload=[statement_id, body.model_dump()])):
        return replay
    out = await adjusting.add_adjustment(uow, principal.org_id, statement_id, Decimal(body.amount), body.reason,
                                         principal.user_id, now_of(context))
    return await _finish(uow, idem, 201, out)


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(min_length=1, max_length=4000)


@router.post("/statements/{statement_id}/lines/{line_id}/disputes", status_code=201,
             summary="Dispute a line of your statement, with a comment",
             operation_id="openDispute", **returns(R.DisputeOut, status=201))
async def open_dispute(statement_id: str, line_id: str, body: DisputeIn, principal: CurrentPrincipal, uow: UowDep,
                       context: ContextDep, idem: IdempotencyDep) -> JSONResponse:
    row = await visible_statement(uow, principal, statement_id)
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope="disputes",
                                   payload=[statement_id, line_id, body.model_dump()])):
        return replay
    out = await adjusting.open_dispute(uow, principal.org_id, row, line_id, body.comment, principal.user_id,
                                       now_of(context))
    return await _finish(uow, idem, 201, out)


class WhatIfIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant_id: str | None = Field(default=None, min_length=1, max_length=100,
                                       description="managers only; a rep asks for themselves")
    value: str = Field(pattern=r"^[0-9]{1,13}(\.[0-9]{1,2})?$")
    currency: ExactCurrencyCode
    product_line: str | None = Field(default=None, max_length=100)
    new_logo: StrictBool = False
    won_at: datetime | None = Field(default=None, description="default: now (years 2000 to 2999)")
    lead_id: str | None = Field(default=None, max_length=100, description="the open deal this is about")


@router.post("/statements/what-if", summary="What you would earn if you won this deal (nothing is written)",
             operation_id="whatIf", **returns(R.WhatIf, checked_beyond_schema=("won_at", "value")))
async def what_if(body: WhatIfIn, principal: CurrentPrincipal, uow: UowDep, context: ContextDep,
                  idem: IdempotencyDep) -> JSONResponse:
    # Nothing is written, but a retry with the key still gets the first answer (computed at its moment), as
    # every POST promises.
    return await once(idem, uow, org_id=principal.org_id, scope="what-if", payload=body.model_dump(mode="json"),
                      act=lambda: _what_if(body, principal, uow, context))


async def _what_if(body: WhatIfIn, principal: Principal, uow: UnitOfWork, context: Any) -> dict[str, Any]:
    participant = body.participant_id if principal.sees_whole_org and body.participant_id else principal.user_id
    won_at = body.won_at or now_of(context)
    if won_at.tzinfo is None:
        won_at = won_at.replace(tzinfo=UTC)
    if not FIRST_DAY <= won_at.date() <= LAST_DAY:
        raise ValidationFailed.single("won_at", f"must be between {FIRST_DAY} and {LAST_DAY}")
    data = await statementing.OrgData.load(uow, principal.org_id)
    period = data.period_of(participant, won_at.date())
    if period is None:
        raise NotFound(f"no plan covers {participant} on {won_at.date()}")
    hypothetical = Win("what-if", body.lead_id or "what-if", won_at, Decimal(body.value), body.currency, participant,
                       data.payee(participant).team_ids[0] if data.payee(participant).team_ids else None,
                       body.product_line, body.new_logo)
    before = await statementing.statement_input(uow, data, participant, *period)
    after = await statementing.statement_input(uow, data, participant, *period, extra_wins=[hypothetical])
    assert before is not None and after is not None
    now_result, then_result = compute_statement(before), compute_statement(after)
    return {"participant_id": participant, "period_start": period[0].isoformat(), "period_end": period[1].isoformat(),
            "currency": then_result.currency, "total_now": str(cents(now_result.total)),
            "total_with_deal": str(cents(then_result.total)),
            "earned": str(cents(then_result.total - now_result.total)),
            "attainment_pct_now": now_result.summary()["attainment_pct"],
            "attainment_pct_with_deal": then_result.summary()["attainment_pct"],
            "deal_lines": [{"kind": line.kind, "rule": line.rule, "amount": str(line.amount),
                            "description": line.description, "steps": list(line.steps)}
                           for line in then_result.lines if line.lead_id == hypothetical.lead_id],
            "warnings": then_result.warnings}


# ------------------------------------------------------------------ disputes
@router.get("/disputes", summary="Disputes (a rep: their own), with the time each took to resolve",
            operation_id="listDisputes", **returns(R.DisputeList))
async def list_disputes(principal: CurrentPrincipal, uow: UowDep, limit: LimitParam = 100,
                        status: Literal["open", "accepted", "rejected"] | None = None) -> dict[str, Any]:
    rows = await disputes_of(uow.session, principal.org_id, status=status or None, limit=limit,
                             participant_id=None if principal.sees_whole_org else principal.user_id)
    items = [adjusting.dispute_json(r) for r in rows]
    times = sorted(i["seconds_to_resolve"] for i in items if i["seconds_to_resolve"] is not None)
    return {"items": items, "next_cursor": None,
            "resolved": len(times), "median_seconds_to_resolve": times[len(times) // 2] if times else None}


@router.get("/disputes/{dispute_id}", summary="One dispute", operation_id="getDispute", **returns(R.DisputeOut))
async def get_dispute(dispute_id: str, principal: CurrentPrincipal, uow: UowDep) -> dict[str, Any]:
    row = await adjusting.get_dispute(uow, principal.org_id, dispute_id)
    if not principal.sees_whole_org and row.participant_id != principal.user_id:
        raise NotFound(f"no dispute {dispute_id}")
    return adjusting.dispute_json(row)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["accepted", "rejected"]
    resolution: str = Field(min_length=1, max_length=4000, description="the reason, shown to the rep")
    amount: str | None = Field(default=None, pattern=AMOUNT_PATTERN,
                               description="accepted: the adjustment, in the statement's plan currency")


@router.post("/disputes/{dispute_id}/resolve", summary="Accept (an adjustment) or reject (with the reason)",
             operation_id="resolveDispute", **returns(R.DisputeOut))
async def resolve_dispute(dispute_id: str, body: ResolveIn, principal: ManagerPrincipal, uow: UowDep,
                          context: ContextDep, idem: IdempotencyDep) -> JSONResponse:
    return await once(idem, uow, org_id=principal.org_id, scope=f"resolve:{dispute_id}",
                      payload=body.model_dump(mode="json"), act=lambda: adjusting.resolve_dispute(
                          uow, principal.org_id, dispute_id, body.outcome, body.resolution,
                          Decimal(body.amount) if body.amount is not None else None, principal.user_id,
                          now_of(context)))


# ------------------------------------------------------------------ payouts
async def _period_rows(uow: UnitOfWork, org_id: str, period_start: date) -> list[Any]:
    rows = await stored.statements_of(uow.session, org_id, period_start=period_start)
    newest: dict[str, Any] = {}
    for row in rows:
        newest[row.participant_id] = row
    return list(newest.values())


@router.post("/payouts/periods/{period_start}/{action}", summary="Review, approve, lock or pay every statement of "
             "a period that is ready for it", operation_id="movePeriod", **returns(R.PeriodMoved))
async def move_period(period_start: date, action: Literal["review", "approve", "lock", "pay"],
                      principal: ManagerPrincipal, uow: UowDep, context: ContextDep,
                      idem: IdempotencyDep) -> JSONResponse:
    source = statementing.TRANSITIONS[action][0]

    async def move() -> dict[str, Any]:
        moved = []
        for row in await _period_rows(uow, principal.org_id, period_start):
            if row.status == source:
                await statementing.transition(uow, principal.org_id, row.statement_id, action, principal.user_id,
                                              now_of(context))
                moved.append(row.statement_id)
        return {"period_start": period_start.isoformat(), "action": action, "statements": moved}

    return await once(idem, uow, org_id=principal.org_id, scope=f"period-{action}:{period_start.isoformat()}",
                      payload=None, act=move)


@router.get("/payouts/periods/{period_start}/export", summary="Payroll CSV of a period's locked and paid statements",
            response_class=Response, operation_id="exportPayroll", **returns(CSV_FILE, media_type="text/csv"))
async def export_payroll(period_start: date, principal: ManagerPrincipal, uow: UowDep) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["participant_id", "currency", "amount", "statement_id", "statement_version", "status",
                     "period_start", "period_end"])
    for row in await _period_rows(uow, principal.org_id, period_start):
        if row.status in statementing.CLOSED:
            writer.writerow([row.participant_id, row.payout_currency, str(row.payout), row.statement_id, row.version,
                             row.status, row.period_start.isoformat(), row.period_end.isoformat()])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="payroll-{period_start}.csv"'})


@router.get("/payouts/audit", summary="The audit log: who changed what, when, before and after",
            operation_id="auditTrail", **returns(R.AuditEntryPage))
async def audit_trail(principal: ManagerPrincipal, uow: UowDep, limit: LimitParam = 100,
                      entity: str | None = None, entity_id: str | None = None) -> dict[str, Any]:
    rows = await audit_entries(uow.session, principal.org_id, limit, entity, entity_id)
    return {"items": [{"at": rfc3339(r.at), "actor": r.actor, "action": r.action, "entity": r.entity,
                       "entity_id": r.entity_id, "before": r.before, "after": r.after} for r in rows],
            "next_cursor": None}


# ------------------------------------------------------------------ credits
class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refunded_at: datetime | None = Field(default=None, description="default: now")
    note: str | None = Field(default=None, max_length=2000)


@router.post("/credits/{lead_id}/refunds", status_code=201,
             summary="Record that a won deal was refunded (its commission is clawed back within the plan's days)",
             operation_id="recordRefund", **returns(R.RefundOut, status=201))
async def record_refund(lead_id: LeadId, principal: ManagerPrincipal, uow: UowDep, context: ContextDep,
                        idem: IdempotencyDep, body: RefundIn | None = None) -> JSONResponse:
    body = body or RefundIn()
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope="refunds",
                                   payload=[lead_id, body.model_dump(mode="json")])):
        return replay
    now = now_of(context)
    if not any(o.kind == "won" for o in await repo.lead_outcomes(uow.session, principal.org_id, lead_id)):
        raise NotFound(f"no won deal {lead_id}")
    refund_id = str(uuid.uuid4())
    await repo.insert_refund(uow.session, principal.org_id, refund_id, lead_id, body.refunded_at or now,
                             principal.user_id, body.note)
    out = {"refund_id": refund_id, "lead_id": lead_id, "refunded_at": (body.refunded_at or now).isoformat(),
           "note": body.note}
    await audit.record(uow, principal.org_id, principal.user_id, now, "refund_recorded", "deal", lead_id, None, out)
    await recalculation.queue_for_lead(uow, principal.org_id, lead_id, "credit_changed", now)
    return await _finish(uow, idem, 201, out)


@router.get("/credits/{lead_id}", summary="A deal's outcomes as incentive-service knows them",
            operation_id="getCredit", **returns(R.CreditOut))
async def get_credit(lead_id: LeadId, principal: ManagerPrincipal, uow: UowDep) -> dict[str, Any]:
    rows = await repo.lead_outcomes(uow.session, principal.org_id, lead_id)
    if not rows:
        raise NotFound(f"no deal {lead_id}")
    return {"lead_id": lead_id, "outcomes": [
        {"kind": r.kind, "at": rfc3339(r.at), "value": None if r.value is None else str(r.value),
         "currency": r.currency, "closer_id": r.owner_id, "team_id": r.team_id, "recorded_by": r.recorded_by,
         "note": r.note} for r in rows]}
