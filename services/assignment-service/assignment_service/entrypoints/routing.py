"""/v1/routing-rules (versioned rule sets), /v1/routing/simulate, /v1/assignments (decisions, manual and bulk)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, ManagerPrincipal
from salesflow_shared.clock import rfc3339
from salesflow_shared.contract import returns
from salesflow_shared.errors import Conflict, NotFound
from salesflow_shared.idempotency import IdempotencyDep, once
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from salesflow_shared.preconditions import check_if_match as shared_check_if_match

from ..adapters import repository as repo
from ..domain.rules import RuleSet
from ..service_layer.assigning import decision_row_to_dict, decisions_for, lead_row, was_owner
from ..service_layer.reassigning import reassign_by_hand, reassign_open_leads
from ..service_layer.reassigning import simulate as simulate_decision
from ..service_layer.rulesets import publish_rule_set, validate_rules
from .directory import check_if_match, etag
from .schemas import (
    BulkReassignIn,
    BulkReassignResult,
    DecisionOut,
    DecisionPage,
    ManualAssignIn,
    RuleSetCheck,
    RuleSetIn,
    RuleSetOut,
    RuleSetVersionPage,
    SimulateIn,
)

router = APIRouter()


def _rule_set_body(rule_set: RuleSet, row: Any = None) -> dict[str, Any]:
    return {"version": rule_set.version, "rules": rule_set.to_dicts(),
            "created_by": row.created_by if row is not None else None,
            "created_at": rfc3339(row.created_at) if row is not None else None}


async def _rule_set_row(uow: Any, org_id: str, version: int | None) -> Any:
    return await repo.rule_set_row(uow.session, org_id, version)


@router.get("/routing-rules", summary="The current rule set (ETag = its version)",
            operation_id="getRoutingRules", **returns(RuleSetOut, etag=True))
async def get_rules(uow: UowDep, principal: CurrentPrincipal, response: Response) -> dict[str, Any]:
    row = await _rule_set_row(uow, principal.org_id, None)
    if row is None:
        raise NotFound("no routing rules published yet (PUT /v1/routing-rules)")
    response.headers["ETag"] = etag(row.version)
    rule_set = await repo.current_rule_set(uow.session, principal.org_id, row.version)
    assert rule_set is not None
    return _rule_set_body(rule_set, row)


@router.put("/routing-rules", summary="Publish a new version of the rule set (If-Match: the current ETag)",
            operation_id="publishRoutingRules", **returns(RuleSetOut, etag=True, checked_beyond_schema=("rules",)))
async def put_rules(body: RuleSetIn, request: Request, response: Response, uow: UowDep,
                    principal: AdminPrincipal) -> dict[str, Any]:
    current = await _rule_set_row(uow, principal.org_id, None)
    if current is not None:
        check_if_match(request, current.version)
    else:  # the first publication: If-Match "0", so two admins publishing at once cannot both win
        shared_check_if_match(request.headers.get("if-match"), None, what="routing rules")
    rule_set = await publish_rule_set(uow.session, principal.org_id, body.rules, principal.user_id, uow.clock.now())
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict("another rule set version was published at the same time; read it and retry") from exc
    response.headers["ETag"] = etag(rule_set.version)
    row = await _rule_set_row(uow, principal.org_id, rule_set.version)
    return _rule_set_body(rule_set, row)


@router.post("/routing-rules/validate", summary="Check a draft rule set without publishing it",
             operation_id="validateRoutingRules", **returns(RuleSetCheck, checked_beyond_schema=("rules",)))
async def validate_draft(body: RuleSetIn, uow: UowDep, principal: AdminPrincipal,
                         idem: IdempotencyDep) -> JSONResponse:
    async def check() -> dict[str, Any]:
        rules = await validate_rules(uow.session, principal.org_id, body.rules)
        return {"valid": True, "rules": [r.to_dict() for r in rules]}

    return await once(idem, uow, org_id=principal.org_id, scope="rules:validate",
                      payload=body.model_dump(mode="json"), act=check)


@router.get("/routing-rules/versions", summary="Every published version, newest first",
            operation_id="listRoutingRuleVersions", **returns(RuleSetVersionPage))
async def list_versions(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                        cursor: CursorParam = None) -> dict[str, Any]:
    return await repo.rule_set_versions_page(uow.session, principal.org_id, limit, cursor)


@router.get("/routing-rules/versions/{version}", summary="One published version (as a past decision used it)",
            operation_id="getRoutingRuleVersion", **returns(RuleSetOut))
async def get_version(version: Annotated[int, Path(ge=1, le=2**31 - 1)], uow: UowDep,
                      principal: CurrentPrincipal) -> dict[str, Any]:
    row = await _rule_set_row(uow, principal.org_id, version)
    if row is None:
        raise NotFound(f"no rule set version {version}")
    rule_set = await repo.current_rule_set(uow.session, principal.org_id, version)
    assert rule_set is not None
    return _rule_set_body(rule_set, row)


@router.post("/routing/simulate", summary="Evaluate a lead against the current or a draft rule set; changes nothing",
             operation_id="simulateRouting", **returns(DecisionOut, checked_beyond_schema=("rules", "lead", "stage")))
async def simulate(body: SimulateIn, uow: UowDep, principal: ManagerPrincipal, idem: IdempotencyDep) -> JSONResponse:
    # Changes nothing; with a key a retry gets the first simulation's answer (only the key's answer is stored).
    return await once(idem, uow, org_id=principal.org_id, scope="routing:simulate",
                      payload=body.model_dump(mode="json"), act=lambda: simulate_decision(
                          uow, principal.org_id, lead=body.lead.model_dump(mode="json"), trigger=body.trigger,
                          draft_rules=body.rules, stage=body.stage.model_dump() if body.stage else None,
                          at=body.at))


# ------------------------------------------------------------------ decisions
@router.get("/assignments", summary="Stored decisions, oldest first (filter by lead_id or owner_id)",
            operation_id="listAssignments", **returns(DecisionPage))
async def list_assignments(uow: UowDep, principal: CurrentPrincipal, lead_id: str | None = None,
                           owner_id: str | None = None, limit: LimitParam = 50,
                           cursor: CursorParam = None) -> dict[str, Any]:
    org = principal.org_id
    if principal.role == "rep":
        # A rep sees the decisions about the leads it owns or owned before (its own decisions are that
        # history: the closer still reads the hand-over of the deal it won), or those that gave it a lead.
        if lead_id is not None:
            row = await lead_row(uow.session, org, lead_id)
            if row is None or (row.owner_id != principal.user_id and not await was_owner(
                    uow.session, org, lead_id, principal.user_id)):
                raise NotFound(f"no decisions for lead {lead_id}")
        else:
            owner_id = principal.user_id
    after = decode_cursor(cursor, 2)
    rows = await decisions_for(uow.session, org, lead_id=lead_id, owner_id=owner_id, limit=limit,
                               after=(str(after[0]), str(after[1])) if after else None)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1].created_at.isoformat(), rows[-1].id])
    return {"items": [decision_row_to_dict(r) for r in rows], "next_cursor": next_cursor}


@router.get("/assignments/{decision_id}", summary="One decision with its explanation",
            operation_id="getAssignment", **returns(DecisionOut))
async def get_assignment(decision_id: str, uow: UowDep, principal: ManagerPrincipal) -> dict[str, Any]:
    row = await repo.get_decision(uow.session, principal.org_id, decision_id)
    if row is None:
        raise NotFound(f"no decision {decision_id}")
    return decision_row_to_dict(row)


@router.post("/assignments", status_code=201, summary="Reassign a lead by hand (recorded with reason: manual)",
             operation_id="reassignLead", **returns(DecisionOut, status=201))
async def manual_assign(body: ManualAssignIn, uow: UowDep, principal: ManagerPrincipal,
                        idem: IdempotencyDep) -> Any:
    org = principal.org_id
    replay = await idem.begin(uow.session, org_id=org, scope="assignments", payload=body.model_dump(mode="json"))
    if replay is not None:
        return replay
    decision = await reassign_by_hand(uow, org, lead_id=body.lead_id, owner_id=body.owner_id, team_id=body.team_id,
                                      note=body.note, decided_by=principal.user_id)
    resp = await idem.complete(uow.session, status_code=201, body=decision.to_dict())
    await uow.commit()
    return resp


@router.post("/reps/{rep_id}/reassign-open-leads", summary="Spread a departing rep's open leads across a team",
             operation_id="reassignOpenLeads", **returns(BulkReassignResult, checked_beyond_schema=("team_id",)))
async def bulk_reassign(rep_id: str, body: BulkReassignIn, uow: UowDep, principal: ManagerPrincipal,
                        idem: IdempotencyDep) -> Any:
    org = principal.org_id
    replay = await idem.begin(uow.session, org_id=org, scope=f"bulk:{rep_id}", payload=body.model_dump(mode="json"))
    if replay is not None:
        return replay
    result = await reassign_open_leads(uow, org, rep_id, team_id=body.team_id, strategy=body.strategy,
                                       deactivate=body.deactivate, note=body.note, decided_by=principal.user_id)
    body_out = {"rep_id": result.rep_id, "team_id": result.team_id, "reassigned": result.reassigned,
                "left_with_team": result.left_with_team,
                "items": [{"lead_id": i.lead_id, "owner_id": i.owner_id, "decision_id": i.decision_id}
                          for i in result.items]}
    resp = await idem.complete(uow.session, status_code=200, body=body_out)
    await uow.commit()
    return resp
