"""Disqualify and erase across the running services.

A disqualified lead leaves its pipeline (position "disqualified", no open tasks) and the Mailchimp list it was
subscribed to. An erased lead's personal data (email, first and last name, phone, the MD5 of the email, its
company's name and domain, its activity subjects) is gone from every table of every service: each service's
PostgreSQL database is searched directly, every text/JSON column of every table (inbox, outbox, event log and
stored Idempotency-Key responses included), and from every service's log."""
from __future__ import annotations

import hashlib
import uuid

from e2e_testkit import (
    LEAD,
    METRICS,
    NOTIFICATION,
    PIPELINE,
    World,
    new_org,
    ok,
    poll,
    position,
    setup_inbound_org,
    smtp_to,
    submit_form,
)

from salesflow_shared.runner import SERVICES


async def new_web_lead(world: World, lead_api, form, tag: str) -> tuple[str, dict[str, str]]:
    person = {"email": f"{tag}@erasure-{tag}.de", "first": f"Firstname{tag}", "last": f"Lastname{tag}",
              "phone": f"+49 30 {int(tag, 16) % 10**8:08d}", "job": "Head of IT", "company": f"Company {tag}",
              "country": "AT", "budget": "2500"}
    accepted = await submit_form(lead_api, form, person)
    return accepted["lead_id"], person


async def test_disqualified_lead_leaves_pipeline_and_mailchimp_list(world: World):
    org = new_org("disq")
    setup = await setup_inbound_org(world, org)
    async with world.admin_clients(org, LEAD, PIPELINE) as (lead_api, pipeline_api):
        lead_id, person = await new_web_lead(world, lead_api, setup.form, uuid.uuid4().hex[:10])
        member_key = ("inbound", hashlib.md5(person["email"].encode()).hexdigest())

        async def subscribed_in_first_stage():
            pos = await position(pipeline_api, lead_id)
            assert pos["status"] == "active" and pos["open_tasks"], pos
            assert world.mailchimp.members.get(member_key, {}).get("status") == "subscribed"
        await poll(subscribed_in_first_stage, timeout=30)

        await ok(lead_api.post(f"/v1/leads/{lead_id}/disqualify", json={"reason": "student, no budget"}))

        async def gone():
            pos = await position(pipeline_api, lead_id)
            assert pos["status"] == "disqualified" and pos["open_tasks"] == [], pos
            assert world.mailchimp.members[member_key]["status"] in ("unsubscribed", "archived")
        await poll(gone, timeout=30)
        assert pos_history_closed(await position(pipeline_api, lead_id))
        assert (await ok(lead_api.get(f"/v1/leads/{lead_id}")))["status"] == "disqualified"


def pos_history_closed(pos) -> bool:
    return all(h["exited_at"] is not None for h in pos["history"])


async def test_erased_lead_leaves_no_personal_data_in_any_service(world: World):
    """The lead goes through the whole flow first (web form, enrichment, routing, pipeline, welcome email,
    Mailchimp list, a logged call, an API re-post with an Idempotency-Key, a win), then is erased: no service's
    database (every text/JSON column of every table: inbox, outbox, event log and stored responses included)
    nor any service's log holds its email, name, phone, the MD5 of its email (Mailchimp's member id), its
    company's name or domain, or the subject of its activity."""
    org = new_org("erase")
    setup = await setup_inbound_org(world, org)
    tag = uuid.uuid4().hex[:10]
    async with world.admin_clients(org, LEAD, PIPELINE, NOTIFICATION) as (lead_api, pipeline_api, notification_api):
        lead_id, person = await new_web_lead(world, lead_api, setup.form, tag)
        keeper_id, keeper = await new_web_lead(world, lead_api, setup.form, uuid.uuid4().hex[:10])
        member = hashlib.md5(person["email"].encode()).hexdigest()
        subject = f"Discovery call Subj{tag}"
        needles = [person["email"], person["first"], person["last"], person["phone"].replace(" ", "")[-8:],
                   member, person["company"], f"erasure-{tag}.de", f"Subj{tag}"]

        # The lead went everywhere first: every service holds some of its personal data.
        async def everywhere():
            assert len(smtp_to(world.smtp, person["email"])) == 1
            assert (await position(pipeline_api, lead_id))["status"] == "active"
            assert world.mailchimp.members.get(("inbound", member), {}).get("status") == "subscribed"
            assert (await ok(lead_api.get(f"/v1/leads/{lead_id}")))["enrichment_status"] == "done"
            for entry in SERVICES:
                assert await world.where_found(entry.name, [lead_id]), f"{entry.name} has not seen the lead"
            # lead-service and notification-service (its lead projection, the sent email) hold the address
            for name in (LEAD, NOTIFICATION):
                assert await world.where_found(name, needles[:1]), f"{name} has no personal data yet"
        await poll(everywhere, timeout=40, interval=0.5)
        await ok(lead_api.post("/v1/activities", json={
            "lead_id": lead_id, "kind": "call", "occurred_at": "2026-01-05T10:00:00Z", "subject": subject},
            headers={"Idempotency-Key": f"call-{tag}"}), 201)
        again = {"contact": {"email": person["email"], "first_name": person["first"], "phone": person["phone"]},
                 "company": {"name": person["company"]}, "source": "api"}
        await ok(lead_api.post("/v1/leads", json=again, headers={"Idempotency-Key": f"again-{tag}"}), 200)
        await ok(pipeline_api.post(f"/v1/positions/{lead_id}/won", json={"value": "2500", "currency": "EUR"}))

        async def won_everywhere():
            assert (await ok(lead_api.get(f"/v1/leads/{lead_id}")))["status"] == "won"
            assert await world.where_found(METRICS, [f"Subj{tag}"]), "metrics-service has not logged the call"
        await poll(won_everywhere, timeout=40, interval=0.5)

        erased = await ok(lead_api.post(f"/v1/leads/{lead_id}/erase"))
        assert lead_id in erased["erased_lead_ids"]

        async def scrubbed_everywhere():
            leftovers = {entry.name: await world.where_found(entry.name, needles) for entry in SERVICES}
            assert leftovers == {entry.name: [] for entry in SERVICES}, leftovers
            assert world.mailchimp.members[("inbound", member)]["status"] == "archived"
        await poll(scrubbed_everywhere, timeout=40, interval=0.5)
        logged = {entry.name: [n for n in needles if n.lower() in world.system.logs(entry.name).lower()]
                  for entry in SERVICES}
        assert logged == {entry.name: [] for entry in SERVICES}, logged

        # The other lead of the same org keeps its data, and the erased one shows none.
        assert (await ok(lead_api.get(f"/v1/leads/{keeper_id}")))["contact"]["email"] == keeper["email"]
        gone = await ok(lead_api.get(f"/v1/leads/{lead_id}"))
        assert gone["contact"]["email"] is None and gone["company"]["name"] is None and gone["erased_at"]
        assert (await notification_api.get("/v1/deliveries", params={"lead_id": lead_id})).status_code == 200
