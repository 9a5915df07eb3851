"""GET /v1/leads/{lead_id}/timeline: the lead's story from the events of every service, and where it stands."""
from __future__ import annotations

from datetime import timedelta

import pytest
from lead_testkit import a_lead, admin, org_id, rep

from salesflow_shared.events import (
    ContactSyncedV1,
    EmailSentV1,
    LeadAssignedV1,
    LeadRoutedV1,
    LeadWonV1,
    StageAdvancedV1,
    TaskCompletedV1,
    TaskCreatedV1,
    make_event,
    utcnow,
)
from salesflow_shared.testing import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


def event(data, lead_id, correlation_id=None, org="org-a", version=1):
    envelope = make_event(data, org_id=org_id(org), subject_id=lead_id, subject_version=version)
    return envelope.model_copy(update={"correlation_id": correlation_id})


async def test_the_timeline_tells_the_story_and_where_the_lead_stands(lead_app):
    c = lead_app.client
    created = await c.post("/v1/leads", json=a_lead("tim@acme.io"), headers=admin(**{"X-Correlation-ID": "req-1"}))
    assert created.status_code == 201, created.text
    lead_id = created.json()["id"]
    url = f"/v1/leads/{lead_id}/timeline"

    async def created_is_told():  # lead-service's own LeadCreated comes back through the broker
        body = (await c.get(url, headers=admin())).json()
        assert [(e["kind"], e["correlation_id"]) for e in body["items"]][:1] == [("created", "req-1")], body
        return body

    await eventually(created_is_told, timeout=15)

    t0 = utcnow()
    dispatch = lead_app.context.dispatcher.dispatch
    assigned = event(LeadAssignedV1(lead_id=lead_id, owner_id="rep-7", owner_name="Ann", team_id="t-1",
                                    rule_id="all", reason="round robin in team Inside"), lead_id, "req-1", version=2)
    story = [
        event(LeadRoutedV1(lead_id=lead_id, pipeline_id="p-1", rule_id="all", reason="fallback rule All"),
              lead_id, "req-1"),
        assigned,
        event(StageAdvancedV1(lead_id=lead_id, pipeline_id="p-1", to_stage_id="s-1", to_stage_name="Qualify",
                              to_stage_position=1, reason="entry", entered_at=t0), lead_id, "req-1"),
        event(TaskCreatedV1(task_id="task-1", lead_id=lead_id, title="Call within 1h", required=True,
                            due_at=t0 + timedelta(hours=1)), lead_id, "req-1"),
        event(TaskCompletedV1(task_id="task-1", lead_id=lead_id, completed_by="rep-7",
                              completed_at=t0 + timedelta(minutes=20)), lead_id, "req-2"),
        event(StageAdvancedV1(lead_id=lead_id, pipeline_id="p-1", from_stage_id="s-1", to_stage_id="s-2",
                              to_stage_name="Propose", to_stage_position=2, reason="goal_met",
                              entered_at=t0 + timedelta(minutes=30)), lead_id, "req-2"),
        event(EmailSentV1(delivery_id="d-1", lead_id=lead_id, message_id="m-1", sequence_id="seq-1", step=1,
                          sent_at=t0 + timedelta(minutes=40)), lead_id),
        event(ContactSyncedV1(delivery_id="d-2", lead_id=lead_id, list_id="L1", action="subscribed"), lead_id),
        event(LeadWonV1(lead_id=lead_id, pipeline_id="p-1", stage_id="s-2", value="5000.00", currency="EUR",
                        owner_id="rep-7", won_at=t0 + timedelta(hours=2)), lead_id, "req-3", version=3),
    ]
    for envelope in story:
        await dispatch(envelope)
    await dispatch(assigned)  # a redelivery adds nothing

    async def settled():  # the win's own LeadUpdated comes back through the broker: read the story once it has
        response = await c.get(url, headers=admin())
        assert response.status_code == 200 and response.headers["ETag"].startswith('"')
        body = response.json()
        assert "updated" in [e["kind"] for e in body["items"]], body
        return body

    body = await eventually(settled, timeout=15)
    kinds = [e["kind"] for e in body["items"]]
    assert kinds[:1] == ["created"]
    # The other services' events in the order they happened (the ContactSynced event is stamped when dispatched).
    told = [e for e in body["items"] if e["producer"] != "lead-service"]
    assert sorted(e["kind"] for e in told) == sorted(
        ["routed", "assigned", "stage_entered", "task_created", "task_completed", "stage_exited", "stage_entered",
         "email_sent", "mailchimp", "won"])
    assigned_entry = next(e for e in told if e["kind"] == "assigned")
    assert assigned_entry["details"]["owner_id"] == "rep-7" and assigned_entry["details"]["reason"] == \
        "round robin in team Inside" and assigned_entry["summary"] == "assigned to Ann: round robin in team Inside"
    routed = next(e for e in told if e["kind"] == "routed")
    assert (routed["details"]["rule_id"], routed["details"]["reason"]) == ("all", "fallback rule All")
    won = next(e for e in told if e["kind"] == "won")
    assert won["summary"] == "won 5000.00 EUR" and won["occurred_at"].startswith(
        (t0 + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    # Where it stands: the owner from LeadAssigned, the pipeline and stage it last entered, the outcome.
    assert (body["owner_id"], body["team_id"], body["pipeline_id"], body["stage_id"], body["stage_name"],
            body["status"]) == ("rep-7", "t-1", "p-1", "s-2", "Propose", "won")

    # Waiting for an effect: the entries caused by one request, by its correlation id.
    mine = (await c.get(url, params={"correlation_id": "req-2"}, headers=admin())).json()["items"]
    assert sorted(e["kind"] for e in mine) == ["stage_entered", "stage_exited", "task_completed"]

    # Pages follow the story: two at a time, the same entries in the same order.
    seen, cursor = [], None
    while True:
        page = (await c.get(url, params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                            headers=admin())).json()
        seen += [e["event_id"] + e["kind"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [e["event_id"] + e["kind"] for e in body["items"]]
    assert (await c.get(url, params={"cursor": "garbage"}, headers=admin())).status_code == 422

    # The owner sees it; another rep and another org do not.
    assert (await c.get(url, headers=rep("org-a", "rep-7"))).status_code == 200
    assert (await c.get(url, headers=rep("org-a", "rep-8"))).status_code == 404
    assert (await c.get(url, headers=admin("org-b"))).status_code == 404

    # Erasure takes the story with the person's data.
    assert (await c.post(f"/v1/leads/{lead_id}/erase", headers=admin())).status_code == 200

    async def forgotten():
        assert (await c.get(url, headers=admin())).status_code == 404 or \
            (await c.get(url, headers=admin())).json()["items"] == []

    await eventually(forgotten, timeout=15)
