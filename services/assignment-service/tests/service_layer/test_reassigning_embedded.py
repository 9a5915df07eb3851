"""A manager's reassignments through the service layer alone (embedded SQLite, in-process bus, no HTTP): the use
cases the routes POST /v1/assignments and POST /v1/reps/{id}/reassign-open-leads call.

What is asserted is what a manager or another service sees: the decision recorded with its reason and who
decided, the lead's new owner, and the events published (LeadAssigned, RepDeactivated).
"""
from __future__ import annotations

from collections import Counter

import pytest
from assignment_embedded import (
    add_rep,
    add_team,
    change_rep,
    history,
    lead_created,
    new_org,
    owner_of,
    publish_rules,
    round_robin,
    told,
)

from assignment_service.adapters import repository as repo
from assignment_service.adapters.orm import reps
from assignment_service.service_layer.reassigning import reassign_by_hand, reassign_open_leads
from salesflow_shared.errors import NotFound, ValidationFailed
from salesflow_shared.testing import EmbeddedService

pytestmark = pytest.mark.asyncio(loop_scope="module")



async def by_hand(svc: EmbeddedService, org: str, lead_id: str, owner_id: str, *, team_id: str | None = None,
                  note: str | None = None) -> dict[str, object]:
    async with svc.uow() as uow:
        decision = await reassign_by_hand(uow, org, lead_id=lead_id, owner_id=owner_id, team_id=team_id, note=note,
                                          decided_by="manager-1")
        await uow.commit()
    return decision.to_dict()


# ------------------------------------------------------------------ one lead, by hand
async def test_a_manual_reassignment_is_recorded_with_its_reason_and_announced(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "sales", ["ann", "bob"])
    await publish_rules(svc, org, [round_robin("sales", "p-1")])
    lead = await lead_created(svc, org)
    assert await owner_of(svc, org, lead) == "ann"
    svc.clock.advance(minutes=5)

    answer = await by_hand(svc, org, lead, "bob", team_id="sales", note="speaks the customer's language")

    assert await owner_of(svc, org, lead) == "bob"
    routed, manual = await history(svc, org, lead)
    assert routed["trigger"] == "lead_created"
    assert manual == {**manual, "id": answer["id"], "trigger": "manual", "owner_id": "bob",
                      "previous_owner_id": "ann", "team_id": "sales", "decided_by": "manager-1",
                      "reason": "manual: reassigned by manager-1 (speaks the customer's language)",
                      "strategy_note": "chosen by a manager", "rule_id": None, "pipeline_id": None,
                      "decided_at": "2026-03-02T10:05:00+00:00"}
    events = await told(svc, org, lead, "LeadRouted", "LeadAssigned", count=3)
    assert [e["type"] for e in events] == ["LeadRouted", "LeadAssigned", "LeadAssigned"]
    assigned = events[-1]
    assert (assigned["owner_id"], assigned["previous_owner_id"], assigned["trigger"], assigned["strategy"]) == (
        "bob", "ann", "manual", "manual")
    assert assigned["reason"] == manual["reason"] and assigned["decision_id"] == answer["id"]
    assert assigned["owner_email"] == "bob@example.com" and assigned["version"] > events[1]["version"]


async def test_a_manual_reassignment_is_refused_for_a_rep_who_cannot_take_it_and_changes_nothing(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "sales", ["ann", "bob"])
    await publish_rules(svc, org, [round_robin("sales", "p-1")])
    lead = await lead_created(svc, org)
    await change_rep(svc, org, "bob", active=False)

    with pytest.raises(ValidationFailed) as refused:
        await by_hand(svc, org, lead, "bob")
    assert [(e.field, e.message) for e in refused.value.errors] == [
        ("owner_id", "rep 'bob' cannot take leads now (inactive)")]
    with pytest.raises(ValidationFailed) as refused:
        await by_hand(svc, org, lead, "nobody")
    assert refused.value.errors[0].message == "no rep 'nobody' in this organization"
    with pytest.raises(ValidationFailed) as refused:
        await by_hand(svc, org, lead, "ann", team_id="no-such-team")
    assert refused.value.errors[0].field == "team_id"
    with pytest.raises(NotFound):
        await by_hand(svc, org, "lead-never-told", "ann")

    assert await owner_of(svc, org, lead) == "ann"
    assert [d["trigger"] for d in await history(svc, org, lead)] == ["lead_created"]


# ------------------------------------------------------------------ a departing rep's open leads
async def test_a_departing_reps_open_leads_are_spread_over_the_rest_of_the_team(embedded):
    svc, org = embedded, new_org()
    # Dan alone takes every new lead; then he leaves and his seven open leads go to Ann, Bob and Cid.
    await add_team(svc, org, "inbound", ["dan"])
    await add_team(svc, org, "sales", ["dan", "ann", "bob", "cid"])
    await publish_rules(svc, org, [round_robin("inbound", "p-1")])
    leads = [await lead_created(svc, org) for _ in range(7)]
    assert {await owner_of(svc, org, lead) for lead in leads} == {"dan"}
    await change_rep(svc, org, "cid", capacity=1)  # Cid takes one lead at most
    svc.clock.advance(hours=1)

    async with svc.uow() as uow:
        result = await reassign_open_leads(uow, org, "dan", team_id="sales", strategy="round_robin",
                                           deactivate=True, note="Dan leaves on Friday", decided_by="manager-1")
        await uow.commit()

    # By hand: the rotation over Ann, Bob, Cid gives ann, bob, cid, ann, bob; the sixth is Cid's turn, but he
    # holds his one lead, so the turn passes to Ann; the seventh is Bob's.
    assert [item.lead_id for item in result.items] == sorted(leads)  # in lead id order
    assert [item.owner_id for item in result.items] == ["ann", "bob", "cid", "ann", "bob", "ann", "bob"]
    assert (result.rep_id, result.team_id, result.reassigned, result.left_with_team) == ("dan", "sales", 7, 0)
    assert Counter([await owner_of(svc, org, lead) for lead in leads]) == {"ann": 3, "bob": 3, "cid": 1}

    last = (await history(svc, org, result.items[-1].lead_id))[-1]
    assert (last["trigger"], last["previous_owner_id"], last["team_id"], last["decided_by"]) == (
        "bulk", "dan", "sales", "manager-1")
    assert last["reason"].startswith("bulk: dan's open leads spread over team SALES by round_robin (")
    assert last["reason"].endswith("; Dan leaves on Friday")
    async with svc.session() as session:
        dan = await repo.get_row(session, reps, org, "dan")
    assert dan.active is False
    [deactivated] = await svc.events(org, "RepDeactivated", count=1)
    assert deactivated.subject_id == "dan" and deactivated.data["rep"]["active"] is False
    # Once Cid holds his one lead (the third), every later decision names him among the reps who could not take it.
    skipped = [(await history(svc, org, item.lead_id))[-1]["skipped"] for item in result.items]
    assert skipped == [[]] * 3 + [[{"rep_id": "cid", "reason": "at_capacity"}]] * 4
    handed_over = [e for e in await svc.events(org, "LeadAssigned", count=14) if e.data["trigger"] == "bulk"]
    assert sorted(e.subject_id for e in handed_over) == sorted(leads)


async def test_leads_nobody_in_the_team_can_take_stay_with_the_team(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "inbound", ["dan"])
    await add_team(svc, org, "sales", ["dan", "eve"])
    await publish_rules(svc, org, [round_robin("inbound", "p-1")])
    leads = [await lead_created(svc, org) for _ in range(2)]
    await change_rep(svc, org, "eve", active=False)
    svc.clock.advance(hours=1)

    async with svc.uow() as uow:
        result = await reassign_open_leads(uow, org, "dan", team_id="sales", strategy="least_loaded",
                                           deactivate=False, note=None, decided_by="manager-1")
        await uow.commit()

    assert (result.reassigned, result.left_with_team) == (0, 2)
    assert [item.owner_id for item in result.items] == [None, None]
    for lead in leads:
        decision = (await history(svc, org, lead))[-1]
        assert (decision["owner_id"], decision["team_id"]) == (None, "sales")
        assert decision["skipped"] == [{"rep_id": "eve", "reason": "inactive"}]

    with pytest.raises(ValidationFailed) as refused:
        async with svc.uow() as uow:
            await reassign_open_leads(uow, org, "dan", team_id="inbound", strategy="round_robin", deactivate=True,
                                      note=None, decided_by="manager-1")
    assert refused.value.errors[0].message == "the team has no other member to take the leads"
    with pytest.raises(NotFound):
        async with svc.uow() as uow:
            await reassign_open_leads(uow, org, "zed", team_id="sales", strategy="round_robin", deactivate=True,
                                      note=None, decided_by="manager-1")


async def test_a_rep_added_through_the_directory_can_take_a_lead_by_hand(embedded):
    svc, org = embedded, new_org()
    await add_team(svc, org, "sales", ["ann"])
    await publish_rules(svc, org, [round_robin("sales", "p-1")])
    lead = await lead_created(svc, org)
    await add_rep(svc, org, "new-hire", working_hours=[{"days": ["sat"], "start": "09:00", "end": "10:00"}])

    # A manager's choice does not wait for working hours (a Monday 10:00 is outside the new hire's Saturday).
    answer = await by_hand(svc, org, lead, "new-hire")
    assert answer["owner_id"] == "new-hire" and answer["reason"] == "manual: reassigned by manager-1"
