"""Won, lost → nurturing → reopened, disqualified and erased leads."""
from datetime import timedelta

import sqlalchemy as sa
from pipeline_testkit import activity, assigned, lead_created, new_lead, routed

from pipeline_service.adapters.orm import activities, positions
from pipeline_service.service_layer.workers import reopen_due_leads
from salesflow_shared.events import LeadDisqualifiedV1, LeadErasedV1


async def route_lead(pipe, pipeline_id, owner="rep-1"):
    lead = new_lead()
    await pipe.dispatch(pipe.envelope(lead_created(lead, contact={"email": "x@example.com"}), lead))
    await pipe.dispatch(pipe.envelope(assigned(lead, owner), lead))
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline_id), lead))
    return lead


async def test_lost_lead_is_nurtured_then_reopened_once_then_won(pipe):
    pipeline = await pipe.instantiate("outbound-cold-calling")
    lead = await route_lead(pipe, pipeline["id"])
    rep = pipe.headers("rep", "rep-1")
    url = f"/v1/positions/{lead}"
    bad = await pipe.client.post(f"{url}/lost", json={"reason": "spite"}, headers=rep)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reason"
    past = (pipe.clock.now() - timedelta(days=1)).isoformat()
    bad = await pipe.client.post(f"{url}/lost", json={"reason": "no budget", "reengage_at": past}, headers=rep)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "reengage_at"
    other_rep = await pipe.client.post(f"{url}/lost", json={"reason": "no budget"},
                                       headers=pipe.headers("rep", "rep-7"))
    assert other_rep.status_code == 404

    reengage = pipe.clock.now() + timedelta(days=10)
    resp = await pipe.client.post(f"{url}/lost", json={"reason": "No budget", "reengage_at": reengage.isoformat()},
                                  headers=rep)
    assert resp.status_code == 200, resp.text
    pos = resp.json()
    assert pos["status"] == "nurturing" and pos["stage"] is None and pos["open_tasks"] == []
    assert pos["history"][0]["exit_reason"] == "lead_lost"
    lost = (await pipe.outbox("LeadLost"))[0]["data"]
    assert lost["reason"] == "No budget" and lost["stage_id"] == pipeline["stages"][0]["id"]
    assert lost["reengage_at"].startswith("2026-12-03T09:00:00")
    assert {s["data"]["reason"] for s in await pipe.outbox("TaskSkipped")} == {"lead_lost"}
    won_again = await pipe.client.post(f"{url}/won", json={"value": "1", "currency": "EUR"}, headers=rep)
    assert won_again.status_code == 409

    assert await reopen_due_leads(pipe.context) == 0  # not yet
    pipe.clock.advance(timedelta(days=10))
    assert await reopen_due_leads(pipe.context) == 1
    assert await reopen_due_leads(pipe.context) == 0  # once
    events = [e for e in await pipe.outbox() if e["type"] in ("LeadLost", "LeadReopened", "StageAdvanced")]
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("StageAdvanced", "entry"), ("LeadLost", "No budget"), ("LeadReopened", None), ("StageAdvanced", "reopened")]
    versions = [e["subject_version"] for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 4
    pos = await pipe.position(lead)
    assert pos["status"] == "active" and pos["stage"]["stage_id"] == pipeline["stages"][0]["id"]
    assert len(pos["open_tasks"]) == 3 and [h["entry_reason"] for h in pos["history"]] == ["entry", "reopened"]

    resp = await pipe.client.post(f"{url}/won", json={"value": "12000.50", "currency": "EUR"}, headers=rep)
    assert resp.status_code == 200 and resp.json()["status"] == "won" and resp.json()["open_tasks"] == []
    won = (await pipe.outbox("LeadWon"))[0]["data"]
    assert won["value"] == "12000.50" and won["currency"] == "EUR" and won["owner_id"] == "rep-1"
    bad = await pipe.client.post(f"{url}/won", json={"value": "-1", "currency": "euro"}, headers=rep)
    assert bad.status_code == 422 and {e["field"] for e in bad.json()["errors"]} == {"value", "currency"}


async def test_a_nurtured_lead_routed_again_reopens_at_once(pipe):
    pipeline = await pipe.instantiate("inbound-web-form")
    lead = await route_lead(pipe, pipeline["id"])
    resp = await pipe.client.post(f"/v1/positions/{lead}/lost", json={"reason": "bad timing"}, headers=pipe.headers())
    assert resp.status_code == 200
    again = await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))  # e.g. a new web form
    pos = await pipe.position(lead)
    assert pos["status"] == "active" and pos["outcome"]["reengage_at"] is None
    assert pos["history"][-1]["entry_reason"] == "entry" and pos["history"][-1]["triggering_event_id"] == str(again.id)
    tail = [(e["type"], e["data"].get("reason")) for e in await pipe.outbox()
            if e["type"] in ("LeadLost", "LeadReopened", "StageAdvanced")][-3:]
    assert tail == [("LeadLost", "bad timing"), ("LeadReopened", None), ("StageAdvanced", "entry")]
    assert await reopen_due_leads(pipe.context, pipe.clock.now() + timedelta(days=365)) == 0


async def test_disqualified_lead_leaves_its_pipeline_and_erased_lead_is_scrubbed(pipe):
    pipeline = await pipe.instantiate("inbound-web-form")
    lead = await route_lead(pipe, pipeline["id"])
    await pipe.dispatch(pipe.envelope(LeadDisqualifiedV1(lead_id=lead, reason="spam"), lead, version=5))
    pos = await pipe.position(lead)
    assert pos["status"] == "disqualified" and pos["pipeline"] is None and pos["open_tasks"] == []
    assert pos["history"][0]["exit_reason"] == "lead_disqualified"
    assert len(await pipe.outbox("TaskSkipped")) == 2
    await pipe.dispatch(pipe.envelope(routed(lead, pipeline["id"]), lead))  # a later routing does not revive it
    assert (await pipe.position(lead))["status"] == "disqualified"

    other = await route_lead(pipe, pipeline["id"])
    await pipe.dispatch(pipe.envelope(activity(other, "call", pipe.clock.now()), other))
    await pipe.dispatch(pipe.envelope(LeadErasedV1(lead_id=other), other, version=9))
    assert (await pipe.client.get(f"/v1/positions/{other}", headers=pipe.headers())).status_code == 404
    async with pipe.context.database.session() as session:
        row = (await session.execute(sa.select(positions).where(positions.c.lead_id == other))).one()
        assert row.lead == {"lead_id": other} and row.status == "erased"
        assert (await session.execute(sa.select(sa.func.count()).select_from(activities).where(
            activities.c.lead_id == other))).scalar_one() == 0
    # Late events about the erased lead do not bring its data back.
    await pipe.dispatch(pipe.envelope(lead_created(other, contact={"email": "x@example.com"}), other, version=10))
    async with pipe.context.database.session() as session:
        assert (await session.execute(sa.select(positions.c.lead).where(positions.c.lead_id == other))).scalar_one() \
            == {"lead_id": other}


async def test_the_closer_keeps_read_only_access_to_the_deal_handed_over_to_account_management(pipe):
    pipeline = await pipe.instantiate("outbound-cold-calling")
    lead = await route_lead(pipe, pipeline["id"], owner="closer-1")
    closer = pipe.headers("rep", "closer-1")
    url = f"/v1/positions/{lead}"
    won = await pipe.client.post(f"{url}/won", json={"value": "9000", "currency": "EUR"}, headers=closer)
    assert won.status_code == 200
    # the routing rule "won → account management" hands the customer over
    await pipe.dispatch(pipe.envelope(assigned(lead, "am-1"), lead))
    got = await pipe.client.get(url, headers=closer)
    assert got.status_code == 200
    assert got.json()["status"] == "won" and got.json()["owner_id"] == "am-1"
    assert got.json()["outcome"]["won_value"] == "9000.00"
    board = (await pipe.client.get("/v1/positions", headers=closer)).json()["items"]
    assert [p["lead_id"] for p in board] == [lead]
    # read-only for the closer; the account manager owns it now; other reps see nothing
    moved = await pipe.client.post(f"{url}/lost", json={"reason": "no budget"}, headers=closer)
    assert moved.status_code == 403
    assert (await pipe.client.get(url, headers=pipe.headers("rep", "am-1"))).status_code == 200
    assert (await pipe.client.get(url, headers=pipe.headers("rep", "rep-7"))).status_code == 404
    assert (await pipe.client.get("/v1/positions", headers=pipe.headers("rep", "rep-7"))).json()["items"] == []


async def test_a_previous_owner_reads_the_tasks_that_followed_the_lead_and_changes_none(pipe):
    pipeline = await pipe.instantiate("outbound-cold-calling")
    lead = await route_lead(pipe, pipeline["id"], owner="rep-1")
    await pipe.dispatch(pipe.envelope(assigned(lead, "rep-2"), lead))
    [task, *_] = (await pipe.position(lead))["open_tasks"]
    assert task["assignee_id"] == "rep-2"  # the owner's tasks followed the lead
    before = pipe.headers("rep", "rep-1")
    assert (await pipe.client.get(f"/v1/tasks/{task['id']}", headers=before)).status_code == 200
    assert (await pipe.client.post(f"/v1/tasks/{task['id']}/complete", headers=before)).status_code == 403
    assert (await pipe.client.get(f"/v1/tasks/{task['id']}", headers=pipe.headers("rep", "rep-7"))).status_code == 404
    assert (await pipe.client.post(f"/v1/tasks/{task['id']}/complete",
                                   headers=pipe.headers("rep", "rep-2"))).status_code == 200
