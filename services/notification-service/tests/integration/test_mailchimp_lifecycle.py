"""Mailchimp follows the lead's whole life (stage entry and exit, won, lost, reopened, disqualified) against the
fake Marketing API, with every call counted; rules are checked against what this service knows; and an unlucky
order (the win overtaking the stage move before it) ends on the same lists as the lucky one."""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from notification_testkit import Harness

from salesflow_shared.events import (
    LeadDisqualifiedV1,
    LeadLostV1,
    LeadReopenedV1,
    LeadWonV1,
    StageAdvancedV1,
)

PIPE, STAGES = "pipe-1", ["s1", "s2", "s3"]


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def entered(lead_id: str, stage_id: str, reason: str = "entry") -> StageAdvancedV1:
    return StageAdvancedV1(lead_id=lead_id, pipeline_id=PIPE, to_stage_id=stage_id, to_stage_name=stage_id,
                           to_stage_position=STAGES.index(stage_id), reason=reason, entered_at=datetime.now(UTC),
                           pipeline_stage_ids=STAGES)


async def setup(harness: Harness) -> None:
    response = await harness.client.put("/v1/mailchimp/settings", json={
        "api_key": "0123456789abcdef-us6", "nurture_list_id": "nurture", "nurture_tag": "nurture"},
        headers={**harness.admin, "If-Match": '"0"'})  # the first setting
    assert response.status_code == 200, response.text
    for rule in ({"stage_id": "s1", "pipeline_id": PIPE, "action": "subscribe", "list_id": "inbound",
                  "tags": ["web"]},
                 {"trigger": "stage_exit", "stage_id": "s2", "action": "subscribe", "list_id": "inbound",
                  "tags": ["demoed"]},
                 {"trigger": "won", "action": "subscribe", "list_id": "onboarding", "tags": ["customer"]},
                 {"trigger": "reopened", "action": "subscribe", "list_id": "inbound", "tags": ["comeback"]},
                 {"trigger": "disqualified", "action": "subscribe", "list_id": "not-a-fit"}):
        await harness.post("/v1/mailchimp/rules", rule)


def calls(harness: Harness, email: str) -> list[tuple]:
    member = md5(email)
    out = []
    for call in harness.mailchimp.calls:
        if member not in call.path:
            continue
        list_id = call.path.split("/lists/")[1].split("/")[0]
        if call.path.endswith("/tags"):
            out.append(("tags", list_id, sorted((t["name"], t["status"]) for t in call.json["tags"])))
        else:
            out.append((call.method, list_id, (call.json or {}).get("status")))
    return out


async def test_rules_name_real_stages_and_moments(harness: Harness):
    lead = await harness.lead()
    await harness.handled(await harness.send(entered(lead, "s1"), lead))  # the pipeline's stages are known now

    async def refused(rule: dict, field: str, words: str) -> None:
        response = await harness.client.post("/v1/mailchimp/rules", json=rule, headers=harness.admin)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        [error] = response.json()["errors"]
        assert error["field"] == field and words in error["message"], error
    await refused({"stage_id": "won", "action": "subscribe", "list_id": "L"}, "stage_id", "use trigger 'won'")
    await refused({"trigger": "won", "stage_id": "s1", "action": "subscribe", "list_id": "L"}, "stage_id",
                  "leave stage_id out")
    await refused({"trigger": "stage_exit", "action": "subscribe", "list_id": "L"}, "stage_id", "names the stage")
    await refused({"stage_id": "s9", "pipeline_id": PIPE, "action": "subscribe", "list_id": "L"}, "stage_id",
                  "no stage 's9' in pipeline 'pipe-1'")
    await refused({"trigger": "promoted", "action": "subscribe", "list_id": "L"}, "trigger", "")
    created = await harness.post("/v1/mailchimp/rules", {"stage_id": "s3", "pipeline_id": PIPE,
                                                         "action": "subscribe", "list_id": "L"})
    assert (created["trigger"], created["stage_id"]) == ("stage_entry", "s3")


async def test_the_lists_follow_the_lead_through_its_whole_life(harness: Harness):
    await setup(harness)
    email = "life@prospect.example"
    lead = await harness.lead(email=email)
    steps = [entered(lead, "s1"), entered(lead, "s2"), entered(lead, "s3"),
             LeadLostV1(lead_id=lead, pipeline_id=PIPE, stage_id="s3", reason="budget", lost_at=datetime.now(UTC)),
             LeadReopenedV1(lead_id=lead, pipeline_id=PIPE, reopened_at=datetime.now(UTC)),
             entered(lead, "s1", reason="reopened"),
             LeadWonV1(lead_id=lead, pipeline_id=PIPE, stage_id="s1", value="100", currency="EUR",
                       won_at=datetime.now(UTC))]
    for step in steps:
        await harness.handled(await harness.send(step, lead))
        harness.clock.advance(seconds=1)
        await harness.settled()
    inbound, nurture, onboarding = (("inbound", md5(email)), ("nurture", md5(email)), ("onboarding", md5(email)))
    members = harness.mailchimp.members
    # The comeback tag held while the reopened lead was open; won, it is a customer now.
    assert (members[inbound]["status"], members[inbound]["tags"]) == ("subscribed", {"web", "demoed"})
    assert members[nurture]["status"] == "archived"  # reopened: off the nurture list
    assert (members[onboarding]["status"], members[onboarding]["tags"]) == ("subscribed", {"customer"})
    by_list: dict[str, list[tuple]] = {}
    for call in calls(harness, email):  # each list's calls in order (lists are independent of each other)
        by_list.setdefault(call[1], []).append((call[0], call[2]))
    assert by_list == {
        "inbound": [("PUT", None), ("tags", [("web", "active")]),  # entered s1
                    ("tags", [("demoed", "active")]),  # left s2 for s3
                    ("tags", [("comeback", "active")]),  # reopened
                    ("tags", [("comeback", "inactive")])],  # won
        "nurture": [("PUT", None), ("tags", [("nurture", "active")]),  # lost
                    ("DELETE", None)],  # reopened
        "onboarding": [("PUT", None), ("tags", [("customer", "active")])],  # won
    }

    # Disqualified: off every list (unsubscribed), onto the not-a-fit list.
    await harness.handled(await harness.send(LeadDisqualifiedV1(lead_id=lead, reason="fraud"), lead))
    await harness.settled()
    assert {k[0]: v["status"] for k, v in members.items() if k[1] == md5(email)} == {
        "inbound": "unsubscribed", "nurture": "archived", "onboarding": "unsubscribed", "not-a-fit": "subscribed"}


async def test_lost_again_after_a_reopening_is_back_on_the_nurture_list(harness: Harness):
    await setup(harness)
    email = "again@prospect.example"
    lead = await harness.lead(email=email)
    steps = [entered(lead, "s2"),
             LeadLostV1(lead_id=lead, pipeline_id=PIPE, stage_id="s2", reason="budget", lost_at=datetime.now(UTC)),
             LeadReopenedV1(lead_id=lead, pipeline_id=PIPE, reopened_at=datetime.now(UTC)),
             entered(lead, "s1", reason="reopened"),
             LeadLostV1(lead_id=lead, pipeline_id=PIPE, stage_id="s1", reason="budget", lost_at=datetime.now(UTC))]
    for step in steps:
        await harness.handled(await harness.send(step, lead))
        harness.clock.advance(seconds=1)
        await harness.settled()
    nurtured = harness.mailchimp.members[("nurture", md5(email))]
    assert (nurtured["status"], nurtured["tags"]) == ("subscribed", {"nurture"})
    assert [c for c in calls(harness, email) if c[1] == "nurture"] == [
        ("PUT", "nurture", None), ("tags", "nurture", [("nurture", "active")]), ("DELETE", "nurture", None),
        ("PUT", "nurture", "subscribed"), ("tags", "nurture", [("nurture", "active")])]


async def test_a_win_overtaking_the_stage_move_before_it_ends_on_the_same_lists(harness: Harness):
    await setup(harness)
    email = "order@prospect.example"
    lead = await harness.lead(email=email)
    stage = harness.envelope(entered(lead, "s1"), lead)  # version 1
    win = harness.envelope(LeadWonV1(lead_id=lead, pipeline_id=PIPE, stage_id="s1", value="100", currency="EUR",
                                     won_at=datetime.now(UTC)), lead)  # version 2
    await harness.handled(await harness.publish(win))
    await harness.settled()
    await harness.handled(await harness.publish(stage))  # late: the lead is won, but it did enter s1
    await harness.settled()
    members = harness.mailchimp.members
    assert members[("onboarding", md5(email))]["tags"] == {"customer"}
    assert (members[("inbound", md5(email))]["status"], members[("inbound", md5(email))]["tags"]) == (
        "subscribed", {"web"})
    assert sorted(c[:2] for c in calls(harness, email)) == sorted([
        ("PUT", "onboarding"), ("tags", "onboarding"), ("PUT", "inbound"), ("tags", "inbound")])
