"""Helpers for the service-layer tests of assignment-service (embedded SQLite, in-process bus): an org's
directory and rules written straight through the repository, leads told as events, and what a manager or
another service sees (the decisions as GET /v1/assignments lists them, the events published)."""
from __future__ import annotations

import uuid
from typing import Any

from assignment_service.adapters import repository as repo
from assignment_service.adapters.orm import reps, teams, territories
from assignment_service.service_layer.assigning import decision_row_to_dict, decisions_for, lead_row
from assignment_service.service_layer.rulesets import publish_rule_set
from salesflow_shared.events import LeadCreatedV1, LeadSnapshot, make_event
from salesflow_shared.testing import EmbeddedService


def new_org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------ the org's directory and rules
async def add_rep(svc: EmbeddedService, org: str, rep_id: str, **fields: Any) -> None:
    values = {"name": f"Rep {rep_id}", "email": f"{rep_id}@example.com", "active": True, "tier": 1,
              "product_lines": [], "languages": [], "capacity": None, "timezone": "UTC", "working_hours": [],
              "out_of_office": [], "last_assigned_at": None, **fields}
    async with svc.uow() as uow:
        await repo.insert_row(uow.session, reps, org, rep_id, 1, svc.clock.now(), values)
        await uow.commit()


async def change_rep(svc: EmbeddedService, org: str, rep_id: str, **changes: Any) -> None:
    async with svc.uow() as uow:
        await repo.bump_row(uow.session, reps, org, rep_id, svc.clock.now(), **changes)
        await uow.commit()


async def add_team(svc: EmbeddedService, org: str, team_id: str, members: list[str]) -> str:
    async with svc.session() as session:
        known = await repo.existing_ids(session, reps, org, members)
    for rep_id in members:
        if rep_id not in known:  # a rep may be in several teams
            await add_rep(svc, org, rep_id)
    async with svc.uow() as uow:
        await repo.insert_row(uow.session, teams, org, team_id, 1, svc.clock.now(),
                              {"name": team_id.upper(), "member_ids": members, "lead_rep_id": None})
        await uow.commit()
    return team_id


async def add_territory(svc: EmbeddedService, org: str, territory_id: str, countries: list[str]) -> str:
    async with svc.uow() as uow:
        await repo.insert_row(uow.session, territories, org, territory_id, 1, svc.clock.now(),
                              {"name": territory_id.upper(), "countries": countries, "regions": [],
                               "postcode_ranges": [], "rep_ids": []})
        await uow.commit()
    return territory_id


async def publish_rules(svc: EmbeddedService, org: str, rules: list[dict[str, Any]]) -> int:
    async with svc.uow() as uow:
        rule_set = await publish_rule_set(uow.session, org, rules, "admin-1", svc.clock.now())
        await uow.commit()
    return rule_set.version


def round_robin(team_id: str, pipeline_id: str, name: str = "everyone else", **rule: Any) -> dict[str, Any]:
    return {"name": name, "pipeline_id": pipeline_id, "owner": {"strategy": "round_robin", "team_id": team_id},
            **({"fallback": True} if "conditions" not in rule else {}), **rule}


# ------------------------------------------------------------------ events in, what is seen
async def lead_created(svc: EmbeddedService, org: str, lead_id: str | None = None, **fields: Any) -> str:
    lead_id = lead_id or f"lead-{uuid.uuid4().hex[:8]}"
    await svc.dispatch(make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id=lead_id, **fields)), org_id=org,
                                  subject_id=lead_id, subject_version=1))
    return lead_id


async def history(svc: EmbeddedService, org: str, lead_id: str) -> list[dict[str, Any]]:
    """The lead's decisions as GET /v1/assignments?lead_id= lists them, oldest first."""
    async with svc.session() as session:
        rows = await decisions_for(session, org, lead_id=lead_id)
    return [decision_row_to_dict(r) for r in rows]


async def owner_of(svc: EmbeddedService, org: str, lead_id: str) -> str | None:
    async with svc.session() as session:
        return (await lead_row(session, org, lead_id)).owner_id  # type: ignore[no-any-return]


async def told(svc: EmbeddedService, org: str, lead_id: str, *types: str, count: int) -> list[dict[str, Any]]:
    events = await svc.events(org, *types, count=count)
    return [{"type": e.type, "version": e.subject_version, **e.data} for e in events if e.subject_id == lead_id]
