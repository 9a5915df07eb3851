"""Routing and assignment through the service layer alone: the embedded SQLite database and the in-process
bus (no PostgreSQL, no RabbitMQ, no HTTP), events handed to the handlers, so the rules run in a few seconds.

What is asserted is what a manager or another service sees: the decision as the assignment history shows it
(rule, rule-set version, reason, skipped reps) and the LeadRouted / LeadAssigned events published.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from assignment_service.adapters import repository as repo
from assignment_service.adapters.orm import reps, teams, territories
from assignment_service.bootstrap import build_definition
from assignment_service.config import Settings
from assignment_service.service_layer.assigning import decision_row_to_dict, decisions_for, lead_row
from assignment_service.service_layer.rulesets import publish_rule_set
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import LeadCreatedV1, LeadSnapshot, LeadUpdatedV1, StageAdvancedV1, make_event
from salesflow_shared.testing import EmbeddedService, embedded_service, embedded_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

MONDAY_10AM = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOLD = ("LeadRouted", "LeadAssigned")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedService]:
    settings = embedded_settings(Settings, tmp_path_factory.mktemp("embedded") / "assignment-service.db")
    async with embedded_service(build_definition(settings), ManualClock(MONDAY_10AM), observe=TOLD) as service:
        yield service


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
    for rep_id in members:
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


# ------------------------------------------------------------------ rule matching
async def test_the_first_matching_rule_routes_by_deal_size_territory_and_product_line(embedded):
    svc, org = embedded, new_org()
    await add_rep(svc, org, "vip")
    await add_team(svc, org, "dach-crm", ["ann", "bob"])
    await add_team(svc, org, "rest", ["zoe"])
    dach = await add_territory(svc, org, "dach", ["DE", "AT", "CH"])
    version = await publish_rules(svc, org, [
        {"id": "big", "name": "Big deals", "pipeline_id": "p-enterprise",
         "conditions": [{"field": "value", "op": "gte", "value": 100000}],
         "owner": {"strategy": "specific_rep", "rep_id": "vip"}},
        round_robin("dach-crm", "p-dach", name="DACH CRM", id="dach-crm",
                    conditions=[{"field": "territory", "op": "eq", "value": dach},
                                {"field": "product_line", "op": "eq", "value": "crm"}]),
        round_robin("rest", "p-default", id="rest"),
    ])

    small_german = await lead_created(svc, org, country="de", value="5000", currency="EUR", product_line="crm")
    big_french = await lead_created(svc, org, country="FR", value="250000", currency="EUR", product_line="crm")
    austrian_erp = await lead_created(svc, org, country="AT", value="5000", currency="EUR", product_line="erp")

    [small] = await history(svc, org, small_german)
    assert (small["rule_id"], small["owner_id"], small["pipeline_id"]) == ("dach-crm", "ann", "p-dach")
    assert small["rule_set_version"] == version == 1 and small["territory"] == {"id": dach, "name": "DACH"}
    assert small["evaluations"][0]["failed_condition"] == {"field": "value", "op": "gte", "value": 100000,
                                                           "actual": "5000"}
    assert small["evaluations"][1]["matched"] is True and len(small["evaluations"]) == 2
    assert small["reason"] == "rule 'DACH CRM' (rule set v1): Rep ann by round_robin (round robin slot 1 of 2)"
    [big] = await history(svc, org, big_french)
    assert (big["rule_id"], big["owner_id"], big["pipeline_id"], big["territory"]) == (
        "big", "vip", "p-enterprise", None)
    [erp] = await history(svc, org, austrian_erp)  # in the territory, but not the product line
    assert (erp["rule_id"], erp["owner_id"], erp["territory"]["id"]) == ("rest", "zoe", dach)
    assert erp["evaluations"][1]["failed_condition"]["field"] == "product_line"
    assert erp["reason"].startswith("fallback rule 'everyone else' (rule set v1): Rep zoe")

    routed, assigned = await told(svc, org, small_german, *TOLD, count=6)
    assert routed["type"] == "LeadRouted" and routed["pipeline_id"] == "p-dach" and routed["territory_id"] == dach
    assert assigned["type"] == "LeadAssigned" and assigned["owner_id"] == "ann"
    assert assigned["owner_email"] == "ann@example.com" and assigned["candidates"] == ["ann", "bob"]
    assert assigned["decision_id"] == small["id"] and assigned["version"] > routed["version"]


# ------------------------------------------------------------------ round robin
async def test_round_robin_takes_turns_across_decisions_and_skips_who_cannot_take_a_lead(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "sales", ["ann", "bob", "cid"])
    await publish_rules(svc, org, [round_robin("sales", "p-1")])

    six = [await lead_created(svc, org) for _ in range(6)]
    assert [await owner_of(svc, org, lead) for lead in six] == ["ann", "bob", "cid"] * 2
    last = (await history(svc, org, six[-1]))[0]
    assert last["rotation"] == {"key": "rr:team:sales", "position": 5, "slot": 2, "next_position": 6}

    # Ann is away this week; Cid may hold two open leads and holds two (the 3rd and the 6th).
    now = svc.clock.now()
    away = {"start": (now - timedelta(days=1)).isoformat(), "end": (now + timedelta(days=5)).isoformat()}
    await change_rep(svc, org, "ann", out_of_office=[away])
    await change_rep(svc, org, "cid", capacity=2)

    seventh = await lead_created(svc, org)  # Ann's slot: she loses the turn, Bob takes it
    eighth = await lead_created(svc, org)  # Cid's slot (at capacity), then Ann's (away): Bob again
    [decision] = await history(svc, org, seventh)
    assert decision["owner_id"] == "bob" and decision["rotation"]["slot"] == 1
    assert decision["skipped"] == [{"rep_id": "ann", "reason": "out_of_office"},
                                   {"rep_id": "cid", "reason": "at_capacity"}]
    [decision] = await history(svc, org, eighth)
    assert decision["owner_id"] == "bob" and decision["rotation"] == {
        "key": "rr:team:sales", "position": 8, "slot": 1, "next_position": 11}

    await change_rep(svc, org, "bob", active=False)  # nobody left: the lead waits with the team
    ninth = await lead_created(svc, org)
    [decision] = await history(svc, org, ninth)
    assert decision["owner_id"] is None and decision["team_id"] == "sales"
    assert decision["reason"] == ("fallback rule 'everyone else' (rule set v1): no available rep "
                                  "(ann: out_of_office, bob: inactive, cid: at_capacity); left with team sales")


async def test_a_lead_created_told_twice_is_routed_once_and_takes_one_turn(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "sales", ["ann", "bob"])
    await publish_rules(svc, org, [round_robin("sales", "p-1")])
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    created = make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id=lead)), org_id=org, subject_id=lead,
                         subject_version=1)

    await svc.dispatch(created)
    await svc.dispatch(created)  # redelivered
    await lead_created(svc, org, lead)  # the same lead announced again under another event id
    other = await lead_created(svc, org)

    assert len(await history(svc, org, lead)) == 1
    assert (await owner_of(svc, org, lead), await owner_of(svc, org, other)) == ("ann", "bob")


# ------------------------------------------------------------------ rule-set versions and re-routing
async def test_a_new_rule_set_version_routes_new_leads_and_past_decisions_keep_theirs(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "inbound", ["ann"])
    await add_team(svc, org, "outbound", ["bob"])
    assert await publish_rules(svc, org, [round_robin("inbound", "p-inbound")]) == 1
    before = await lead_created(svc, org)
    assert await publish_rules(svc, org, [round_robin("outbound", "p-outbound")]) == 2
    after = await lead_created(svc, org)

    [first] = await history(svc, org, before)
    [second] = await history(svc, org, after)
    assert (first["rule_set_version"], first["pipeline_id"], first["owner_id"]) == (1, "p-inbound", "ann")
    assert (second["rule_set_version"], second["pipeline_id"], second["owner_id"]) == (2, "p-outbound", "bob")
    async with svc.session() as session:
        kept = await repo.current_rule_set(session, org, 1)
    assert kept is not None and kept.rules[0].pipeline_id == "p-inbound"  # version 1 stays readable


async def test_a_changed_country_re_routes_a_lead_whose_rule_asks_for_it(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "dach", ["ann"])
    await add_team(svc, org, "rest", ["zoe"])
    dach = await add_territory(svc, org, "dach", ["DE"])
    await publish_rules(svc, org, [
        round_robin("dach", "p-dach", name="DACH", id="dach", reroute_on_update=True,
                    conditions=[{"field": "territory", "op": "eq", "value": dach}]),
        round_robin("rest", "p-rest", id="rest", reroute_on_update=True),
    ])
    lead = await lead_created(svc, org, country="FR")
    assert await owner_of(svc, org, lead) == "zoe"

    def updated(version: int, changed: list[str], **fields: Any) -> Any:
        return make_event(LeadUpdatedV1(lead=LeadSnapshot(lead_id=lead, owner_id="zoe", **fields), changed=changed,
                                        cause="edit"), org_id=org, subject_id=lead, subject_version=version)

    svc.clock.advance(minutes=1)  # decisions are listed in time order
    await svc.dispatch(updated(2, ["score"], country="FR", score=40))  # nothing routing reads: nothing moves
    await svc.dispatch(updated(3, ["country"], country="DE", score=40))

    decisions = await history(svc, org, lead)
    assert [(d["trigger"], d["rule_id"], d["owner_id"], d["previous_owner_id"]) for d in decisions] == [
        ("lead_created", "rest", "zoe", None), ("lead_updated", "dach", "ann", "zoe")]
    events = await told(svc, org, lead, *TOLD, count=4)
    assert [(e["type"], e["pipeline_id"] if e["type"] == "LeadRouted" else e["owner_id"]) for e in events] == [
        ("LeadRouted", "p-rest"), ("LeadAssigned", "zoe"), ("LeadRouted", "p-dach"), ("LeadAssigned", "ann")]
    assert events[-1]["previous_owner_id"] == "zoe" and events[-1]["trigger"] == "lead_updated"


# ------------------------------------------------------------------ hand-off at a stage
async def test_entering_the_closing_stage_hands_the_lead_to_the_closer_unless_the_closer_is_away(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "sdr", ["ann"])
    await add_rep(svc, org, "closer")
    await publish_rules(svc, org, [
        {"id": "close", "name": "Closers close", "triggers": ["stage_entry"],
         "conditions": [{"field": "stage_name", "op": "eq", "value": "Negotiation"}],
         "owner": {"strategy": "specific_rep", "rep_id": "closer"}},
        round_robin("sdr", "p-1"),
    ])

    def entered(lead_id: str, stage: str, version: int) -> Any:
        return make_event(StageAdvancedV1(lead_id=lead_id, pipeline_id="p-1", to_stage_id=stage.lower(),
                                          to_stage_name=stage, to_stage_position=version, reason="manual",
                                          entered_at=svc.clock.now()),
                          org_id=org, subject_id=lead_id, subject_version=version)

    handed = await lead_created(svc, org)
    svc.clock.advance(minutes=1)  # decisions are listed in time order
    await svc.dispatch(entered(handed, "Demo", 1))  # no rule for this stage: nothing moves
    await svc.dispatch(entered(handed, "Negotiation", 2))
    assert await owner_of(svc, org, handed) == "closer"
    decisions = await history(svc, org, handed)
    assert [(d["trigger"], d["owner_id"], d["previous_owner_id"]) for d in decisions] == [
        ("lead_created", "ann", None), ("stage_entry", "closer", "ann")]

    away = {"start": svc.clock.now().isoformat(), "end": (svc.clock.now() + timedelta(days=3)).isoformat()}
    await change_rep(svc, org, "closer", out_of_office=[away])
    kept = await lead_created(svc, org)
    svc.clock.advance(minutes=1)
    await svc.dispatch(entered(kept, "Negotiation", 1))
    assert await owner_of(svc, org, kept) == "ann"
    last = (await history(svc, org, kept))[-1]
    assert last["trigger"] == "stage_entry" and last["owner_id"] is None
    assert last["reason"] == ("rule 'Closers close' (rule set v1): no available rep (closer: out_of_office); "
                              "left unassigned; the lead stays with ann")
