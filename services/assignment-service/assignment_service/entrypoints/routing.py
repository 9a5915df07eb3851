"""/v1/routing-rules (versioned rule sets), /v1/routing/simulate, /v1/assignments (decisions, manual and bulk)."""
from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, ManagerPrincipal
from salesflow_shared.clock import rfc3339
from salesflow_shared.contract import returns
from salesflow_shared.errors import Conflict, NotFound, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep, once
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor, keyset_page
from salesflow_shared.preconditions import check_if_match as shared_check_if_match

from ..adapters import repository as repo
from ..adapters.orm import reps, rule_sets
from ..domain.rules import RuleSet, assumed_facts
from ..domain.strategies import LEAST_LOADED, ROUND_ROBIN, OwnerRequest
from ..service_layer.assigning import (
    BULK,
    MANUAL,
    Decision,
    apply_decision,
    choose,
    decide,
    decision_row_to_dict,
    decisions_for,
    lead_row,
    was_owner,
)
from ..service_layer.rep_events import publish_rep
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
    query = sa.select(rule_sets.c.version, rule_sets.c.created_by, rule_sets.c.created_at).where(
        rule_sets.c.org_id == principal.org_id)
    return await keyset_page(uow.session, query, [rule_sets.c.version], limit, cursor, lambda r: {
        "version": r.version, "created_by": r.created_by, "created_at": rfc3339(r.created_at)}, descending=True)


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
                      payload=body.model_dump(mode="json"), act=lambda: _simulate(body, uow, principal))


async def _simulate(body: SimulateIn, uow: Any, principal: Any) -> dict[str, Any]:
    org = principal.org_id
    if body.rules is not None:
        rule_set = RuleSet(0, await validate_rules(uow.session, org, body.rules))
    else:
        current = await repo.current_rule_set(uow.session, org)
        if current is None:
            raise NotFound("no routing rules published yet; pass a draft in `rules`")
        rule_set = current
    snapshot = body.lead.model_dump(mode="json")
    if snapshot.get("value") is not None:
        snapshot["value"] = str(snapshot["value"])
    decision = await decide(uow.session, org, body.lead.lead_id or "simulated", snapshot, body.trigger,
                            rule_set=rule_set, now=body.at or uow.clock.now(),
                            stage=body.stage.model_dump() if body.stage else None, dry_run=True)
    # A dry run writes nothing (no rotation advances, no rep row is locked); only an Idempotency-Key's answer
    # is stored.
    result = decision.to_dict()
    result.update(simulated=True, draft=body.rules is not None, id=None,
                  assumed=assumed_facts(rule_set, snapshot, body.trigger))
    return result


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
    payload = body.model_dump(mode="json")
    replay = await idem.begin(uow.session, org_id=org, scope="assignments", payload=payload)
    if replay is not None:
        return replay
    row = await repo.lock_lead(uow.session, org, body.lead_id)
    if row is None:
        raise NotFound(f"no lead {body.lead_id} known to assignment-service")
    if body.team_id is not None and body.team_id not in await repo.all_teams(uow.session, org):
        raise ValidationFailed.single("team_id", f"no team '{body.team_id}' in this organization")
    now = uow.clock.now()
    decision = Decision(body.lead_id, MANUAL, None, None, None, [], team_id=body.team_id,
                        previous_owner_id=row.owner_id, decided_at=now, decided_by=principal.user_id)
    await choose(uow.session, org, decision, OwnerRequest("specific_rep", (body.owner_id,),
                                                          respect_working_hours=False), {}, now, dry_run=False)
    if decision.owner is None:
        reason = decision.choice.skipped[0]["reason"] if decision.choice and decision.choice.skipped else "unknown"
        if reason == "not_in_directory":
            raise ValidationFailed.single("owner_id", f"no rep '{body.owner_id}' in this organization")
        raise ValidationFailed.single("owner_id", f"rep '{body.owner_id}' cannot take leads now ({reason})")
    assert decision.choice is not None, "an owner is only ever set with the choice that picked it"
    decision.choice.note = "chosen by a manager"
    decision.reason = f"manual: reassigned by {principal.user_id}" + (f" ({body.note})" if body.note else "")
    await apply_decision(uow, org, row, decision)
    resp = await idem.complete(uow.session, status_code=201, body=decision.to_dict())
    await uow.commit()
    return resp


@router.post("/reps/{rep_id}/reassign-open-leads", summary="Spread a departing rep's open leads across a team",
             operation_id="reassignOpenLeads", **returns(BulkReassignResult, checked_beyond_schema=("team_id",)))
async def bulk_reassign(rep_id: str, body: BulkReassignIn, uow: UowDep, principal: ManagerPrincipal,
                        idem: IdempotencyDep) -> Any:
    org = principal.org_id
    payload = body.model_dump(mode="json")
    replay = await idem.begin(uow.session, org_id=org, scope=f"bulk:{rep_id}", payload=payload)
    if replay is not None:
        return replay
    if await repo.get_row(uow.session, reps, org, rep_id, for_update=True) is None:
        raise NotFound(f"no rep {rep_id}")
    team = (await repo.all_teams(uow.session, org)).get(body.team_id)
    if team is None:
        raise ValidationFailed.single("team_id", f"no team '{body.team_id}' in this organization")
    members = tuple(m for m in team.member_ids if m != rep_id)
    if not members:
        raise ValidationFailed.single("team_id", "the team has no other member to take the leads")
    if body.deactivate:
        await repo.bump_row(uow.session, reps, org, rep_id, uow.clock.now(), active=False)
        await publish_rep(uow, org, rep_id, "deactivated")
    lead_ids = await repo.open_leads_of(uow.session, org, rep_id)
    results: list[dict[str, Any]] = []
    unassigned = 0
    for lead_id in lead_ids:
        row = await repo.lock_lead(uow.session, org, lead_id)
        now = uow.clock.now()
        decision = Decision(lead_id, BULK, None, None, None, [], team_id=team.id, previous_owner_id=rep_id,
                            decided_at=now, decided_by=principal.user_id,
                            rotation_key=f"rr:team:{team.id}" if body.strategy == ROUND_ROBIN else None)
        strategy = ROUND_ROBIN if body.strategy == ROUND_ROBIN else LEAST_LOADED
        await choose(uow.session, org, decision, OwnerRequest(strategy, members), row.snapshot or {}, now,
                     dry_run=False)
        assert decision.choice is not None
        if decision.owner is None:
            unassigned += 1
        decision.reason = (f"bulk: {rep_id}'s open leads spread over team {team.name} by {body.strategy} "
                           f"({decision.choice.note})" + (f"; {body.note}" if body.note else ""))
        await apply_decision(uow, org, row, decision)
        results.append({"lead_id": lead_id, "owner_id": decision.owner_id, "decision_id": decision.id})
    body_out = {"rep_id": rep_id, "team_id": team.id, "reassigned": len(results) - unassigned,
                "left_with_team": unassigned, "items": results}
    resp = await idem.complete(uow.session, status_code=200, body=body_out)
    await uow.commit()
    return resp
