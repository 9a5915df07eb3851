"""Mailchimp sync against a fake Marketing API v3 on 127.0.0.1 (real HTTP, nothing patched)."""
from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import pytest
from notification_fakes import FakeMailchimp
from notification_testkit import Harness

from notification_service.adapters.errors import PermanentDeliveryError
from notification_service.adapters.mailchimp import MailchimpClient, base_url_for
from salesflow_shared.events import (
    ContactData,
    LeadDisqualifiedV1,
    LeadLostV1,
    LeadSnapshot,
    LeadUpdatedV1,
    StageAdvancedV1,
)


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def entered(lead_id: str, stage_id: str) -> StageAdvancedV1:
    return StageAdvancedV1(lead_id=lead_id, pipeline_id="pipe-1", to_stage_id=stage_id, to_stage_name=stage_id,
                           to_stage_position=1, reason="entry", entered_at=datetime.now(UTC))


async def configure(harness: Harness) -> None:
    invalid = await harness.client.put("/v1/mailchimp/settings", json={"api_key": "nodatacentre"},
                                       headers={**harness.admin, "If-Match": '"0"'})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "api_key"
    response = await harness.client.put("/v1/mailchimp/settings", json={
        "api_key": "0123456789abcdef-us6", "nurture_list_id": "nurture-list", "nurture_tag": "lost-q1"},
        headers={**harness.admin, "If-Match": '"0"'})  # not set yet: the first setting is conditional too
    assert response.status_code == 200 and "api_key" not in response.json()
    read = await harness.client.get("/v1/mailchimp/settings", headers=harness.admin)
    assert read.json()["api_key_hint"] == "…cdef-us6" and read.headers["ETag"] == response.headers["ETag"]
    replace = {"api_key": "0123456789abcdef-us6", "nurture_list_id": "nurture-list", "nurture_tag": "lost-q1"}
    assert (await harness.client.put("/v1/mailchimp/settings", json=replace,
                                     headers=harness.admin)).status_code == 428
    assert (await harness.client.put("/v1/mailchimp/settings", json=replace,
                                     headers={**harness.admin, "If-Match": '"stale"'})).status_code == 412
    replaced = await harness.client.put("/v1/mailchimp/settings", json=replace,
                                        headers={**harness.admin, "If-Match": read.headers["ETag"]})
    assert replaced.status_code == 200
    await harness.post("/v1/mailchimp/rules", {"stage_id": "qualified", "action": "subscribe", "list_id": "L1",
                                               "tags": ["qualified"], "merge_fields": {"FNAME": "first_name"}})


async def test_subscribe_on_stage_unsubscribe_on_disqualify_nurture_tag_on_lost(harness: Harness):
    mc = harness.mailchimp
    await configure(harness)
    lead = await harness.lead(email="Ada@Prospect.example")
    await harness.handled(await harness.send(entered(lead, "qualified"), lead))
    await harness.settled()
    member = mc.members[("L1", md5("ada@prospect.example"))]
    assert member["status"] == "subscribed" and member["merge_fields"] == {"FNAME": "Ada"}
    assert member["tags"] == {"qualified"}
    [put] = mc.calls_to("PUT")
    assert put.path == f"/3.0/lists/L1/members/{md5('ada@prospect.example')}"
    assert put.json["status_if_new"] == "subscribed" and put.auth.startswith("Basic ")

    harness.clock.advance(minutes=1)
    await harness.handled(await harness.send(LeadDisqualifiedV1(lead_id=lead, reason="spam"), lead))
    await harness.settled()
    assert mc.members[("L1", md5("ada@prospect.example"))]["status"] == "unsubscribed"
    assert [c.json for c in mc.calls_to("PATCH")] == [{"status": "unsubscribed"}]

    lost = await harness.lead(email="lost@prospect.example")
    await harness.handled(await harness.send(LeadLostV1(lead_id=lost, pipeline_id="pipe-1", reason="budget",
                                                        lost_at=datetime.now(UTC)), lost))
    await harness.settled()
    nurtured = mc.members[("nurture-list", md5("lost@prospect.example"))]
    assert nurtured["status"] == "subscribed" and nurtured["tags"] == {"lost-q1"}

    synced = [(e["data"]["lead_id"], e["data"]["list_id"], e["data"]["action"], e["data"]["outcome"])
              for e in await harness.published("ContactSynced")]
    assert synced == [(lead, "L1", "subscribed", "ok"), (lead, "L1", "unsubscribed", "ok"),
                      (lost, "nurture-list", "subscribed", "ok")]
    log = (await harness.client.get("/v1/deliveries", params={"lead_id": lead}, headers=harness.admin)).json()
    assert [(d["reason"], d["status"]) for d in log["items"]] == [("disqualified", "sent"), ("stage_rule", "sent")]


async def test_429_then_success_and_permanent_4xx_recorded_not_retried(harness: Harness):
    mc = harness.mailchimp
    await configure(harness)
    mc.fail_with = [429, 503]
    lead = await harness.lead(email="retry@prospect.example")
    await harness.handled(await harness.send(entered(lead, "qualified"), lead))
    await harness.settled()
    [row] = await harness.deliveries(lead_id=lead, kind="mailchimp")
    assert row["status"] == "sent" and row["attempts"] == 1  # retried inside the attempt, with backoff
    assert len(mc.calls_to("PUT")) == 3
    assert mc.members[("L1", md5("retry@prospect.example"))]["status"] == "subscribed"

    mc.compliance_blocked.add("blocked@prospect.example")
    blocked = await harness.lead(email="blocked@prospect.example")
    await harness.handled(await harness.send(entered(blocked, "qualified"), blocked))
    await harness.settled()
    [row] = await harness.deliveries(lead_id=blocked, kind="mailchimp")
    assert row["status"] == "failed" and "Compliance State" in row["error"]
    assert len(mc.calls_to("PUT", md5("blocked@prospect.example"))) == 1  # never retried
    failed = [e["data"] for e in await harness.published("ContactSynced") if e["data"]["outcome"] == "failed"]
    assert [d["lead_id"] for d in failed] == [blocked]


async def test_ten_connection_cap_holds_under_a_burst_of_200_syncs(fake_mailchimp: FakeMailchimp):
    fake_mailchimp.latency_s = 0.02
    fake_mailchimp.fail_with = [429] * 5 + [500] * 5
    client = MailchimpClient("abc-us6", base_url=fake_mailchimp.base_url, max_connections=10, backoff_s=0.01)
    try:
        results = await asyncio.gather(*(client.upsert_member("L9", f"user{i}@example.com") for i in range(200)))
    finally:
        await client.aclose()
    assert len(results) == 200 and len(fake_mailchimp.members) == 200
    assert fake_mailchimp.max_in_flight == 10  # saturated, never exceeded
    assert len({c.client_port for c in fake_mailchimp.calls}) <= 10  # at most ten connections were opened


def test_api_key_data_centre_suffix_gives_the_base_url():
    assert base_url_for("0123abcd-us6") == "https://us6.api.mailchimp.com/3.0"
    assert base_url_for("0123abcd-us6", "http://127.0.0.1:9/3.0/") == "http://127.0.0.1:9/3.0"
    with pytest.raises(ValueError):
        base_url_for("no-data-centre-")


async def test_unknown_member_unsubscribe_is_not_an_error(fake_mailchimp: FakeMailchimp):
    client = MailchimpClient("abc-us6", base_url=fake_mailchimp.base_url)
    try:
        await client.unsubscribe("L1", md5("nobody@example.com"))  # nothing to unsubscribe: fine
        with pytest.raises(PermanentDeliveryError, match="404"):
            await client.set_tags("L1", md5("nobody@example.com"), ["x"])
    finally:
        await client.aclose()


async def test_a_changed_email_moves_the_member_to_the_new_address_once(harness: Harness):
    mc = harness.mailchimp
    await configure(harness)
    lead = await harness.lead(email="old@prospect.example")
    bystander = await harness.lead(email="never-synced@prospect.example")  # on no list: nothing to move
    await harness.handled(await harness.send(entered(lead, "qualified"), lead))
    await harness.settled()
    old, new = md5("old@prospect.example"), md5("new@prospect.example")
    assert mc.members[("L1", old)]["status"] == "subscribed"

    def update(lead_id: str, email: str) -> LeadUpdatedV1:
        return LeadUpdatedV1(lead=LeadSnapshot(lead_id=lead_id, contact=ContactData(
            first_name="Ada", last_name="Lovelace", email=email)), changed=["contact.email"])
    changed = harness.envelope(update(lead, "New@Prospect.example"), lead)
    await harness.publish(changed)
    await harness.publish(changed)  # redelivered
    replay = harness.envelope(update(lead, "New@Prospect.example"), lead, version=changed.subject_version)
    await harness.publish(replay)  # replayed under a new event id
    other = await harness.send(update(bystander, "still-not-synced@prospect.example"), bystander)
    await harness.handled(changed, replay, other)
    await harness.settled()

    assert mc.members[("L1", old)]["status"] == "archived"
    moved = mc.members[("L1", new)]
    assert moved["email_address"] == "New@Prospect.example" and moved["status"] == "subscribed"
    assert moved["tags"] == {"qualified"} and moved["merge_fields"] == {"FNAME": "Ada"}
    assert [c.path for c in mc.calls_to("DELETE")] == [f"/3.0/lists/L1/members/{old}"]
    assert [c.path.rsplit("/", 1)[1] for c in mc.calls_to("PUT")] == [old, new]
    assert not any("never-synced" in str(c.json) or "still-not-synced" in str(c.json) for c in mc.calls)
    [synced] = [e["data"] for e in await harness.published("ContactSynced")
                if e["data"]["delivery_id"] == (await harness.deliveries(reason="email_changed"))[0]["id"]]
    assert (synced["action"], synced["outcome"], synced["tags"]) == ("subscribed", "ok", ["qualified"])

    # Leaving the list now concerns the new address.
    harness.clock.advance(minutes=1)
    await harness.handled(await harness.send(LeadDisqualifiedV1(lead_id=lead, reason="spam"), lead))
    await harness.settled()
    assert [c.path for c in mc.calls_to("PATCH")] == [f"/3.0/lists/L1/members/{new}"]
    assert mc.members[("L1", new)]["status"] == "unsubscribed"


async def test_erasure_archives_the_member_then_forgets_its_hash_and_logs_neither(harness: Harness, caplog, capsys):
    import logging

    import sqlalchemy as sa

    from notification_service.adapters.orm import mailchimp_members
    from salesflow_shared.events import LeadErasedV1

    caplog.set_level(logging.DEBUG)
    mc = harness.mailchimp
    await configure(harness)
    lead = await harness.lead(email="Erase.Me@Prospect.example")
    member = md5("erase.me@prospect.example")
    await harness.handled(await harness.send(entered(lead, "qualified"), lead))
    await harness.settled()
    assert mc.members[("L1", member)]["status"] == "subscribed"

    await harness.handled(await harness.send(LeadErasedV1(lead_id=lead), lead))
    await harness.settled()
    assert mc.members[("L1", member)]["status"] == "archived"  # at Mailchimp, with the hash it needed
    assert [c.path for c in mc.calls_to("DELETE")] == [f"/3.0/lists/L1/members/{member}"]
    async with harness.context.database.session() as session:
        kept = (await session.execute(sa.select(mailchimp_members).where(
            mailchimp_members.c.org_id == harness.org))).all()
    assert kept == []
    rows = await harness.deliveries(lead_id=lead)
    assert sorted((r["kind"], r["reason"], r["status"]) for r in rows) == [("mailchimp", "erased", "sent"),
                                                                           ("mailchimp", "stage_rule", "sent")]
    for row in rows:
        assert member not in str(row) and "erase.me" not in str(row).lower()
    logged = caplog.text + capsys.readouterr().out
    assert "/members/" in str(mc.calls_to("PUT")[0].path)  # the calls were made...
    assert member not in logged and "erase.me" not in logged.lower()  # ...and never logged
