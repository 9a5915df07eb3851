"""Leads REST on PostgreSQL + RabbitMQ: create/read/list, ETag conflicts, erase, tenant isolation, events."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import aio_pika
import pytest
import sqlalchemy as sa
from lead_testkit import a_lead, admin, org_id, rep

from lead_service.adapters.orm import contacts
from salesflow_shared.events import EmailSentV1, LeadAssignedV1, LeadLostV1, LeadWonV1, make_event, utcnow
from salesflow_shared.testing import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def create(client, body=None, headers=None):
    r = await client.post("/v1/leads", json=body or a_lead(), headers=headers or admin())
    assert r.status_code in (200, 201), r.text
    return r.json()


async def test_lead_created_reaches_a_rabbitmq_queue(lead_app, amqp_url):
    bus_namespace = lead_app.context.settings.bus_namespace
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(f"{bus_namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        queue = await channel.declare_queue(f"{bus_namespace}test.events", durable=True)
        await queue.bind(exchange, routing_key="LeadCreated")
        lead = await create(lead_app.client)

        async def arrived():
            message = await queue.get(no_ack=True, fail=False)
            assert message is not None
            return json.loads(message.body)
        envelope = await eventually(arrived)
        assert envelope["type"] == "LeadCreated" and envelope["subject_id"] == lead["id"]
        assert envelope["subject_version"] == 1 and envelope["org_id"] == org_id("org-a")
        assert envelope["data"]["lead"]["contact"]["email"] == "ada@acme.io"
        assert envelope["data"]["lead"]["company"]["domain"] == "acme.io"
    finally:
        await connection.close()


async def test_create_get_list_filters_and_cursor(lead_app):
    c = lead_app.client
    created = [await create(c, a_lead(f"p{i}@firm{i}.com", country="DE" if i % 2 else "FR",
                                      product_line="pro" if i < 3 else "basic")) for i in range(5)]
    r = await c.get(f"/v1/leads/{created[0]['id']}", headers=admin())
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    seen, cursor = [], None
    while True:
        r = await c.get("/v1/leads", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=admin())
        assert r.status_code == 200
        seen += [i["id"] for i in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(lead["id"] for lead in created) and len(seen) == 5
    r = await c.get("/v1/leads", params={"country": "de", "product_line": "pro"}, headers=admin())
    assert {i["contact"]["email"] for i in r.json()["items"]} == {"p1@firm1.com"}
    r = await c.get("/v1/leads", params={"q": "firm3"}, headers=admin())
    assert [i["contact"]["email"] for i in r.json()["items"]] == ["p3@firm3.com"]
    r = await c.get("/v1/leads", params={"cursor": "garbage!"}, headers=admin())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"
    r = await c.get("/v1/leads/export", params={"country": "FR"}, headers=admin())
    lines = r.text.strip().splitlines()
    assert r.headers["content-type"].startswith("text/csv") and len(lines) == 1 + 3


async def test_same_email_updates_the_open_lead_and_contacts_companies_are_shared(lead_app):
    c = lead_app.client
    first = await create(c, a_lead("bob@globex.com"))
    second = await create(c, a_lead("BOB@globex.com", value="900", currency="EUR", region="Bavaria"))
    assert second["id"] == first["id"] and second["version"] == 2 and second["region"] == "Bavaria"
    other = await create(c, a_lead("alice@globex.com"))
    assert other["id"] != first["id"] and other["company"]["company_id"] == first["company"]["company_id"]
    assert other["company"]["name"] == "Acme"
    assert await lead_app.scalar(sa.select(sa.func.count()).select_from(contacts).where(
        contacts.c.org_id == org_id("org-a"))) == 2


async def test_bad_input_is_a_problem_naming_the_field(lead_app):
    c = lead_app.client
    for body, field in [({"contact": {"email": "not-an-email"}}, "contact.email"),
                        ({**a_lead(), "surprise": 1}, "surprise"),
                        ({**a_lead(), "country": "Germany"}, "country"),
                        ({**a_lead(), "value": "abc"}, "value")]:
        r = await c.post("/v1/leads", json=body, headers=admin())
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in r.json()["errors"]]
    r = await c.post("/v1/leads", content=b"{not json", headers={**admin(), "Content-Type": "application/json"})
    assert r.status_code == 422
    assert await lead_app.outbox() == []


async def test_patch_needs_a_fresh_etag(lead_app):
    c = lead_app.client
    lead = await create(c)
    url = f"/v1/leads/{lead['id']}"
    r = await c.patch(url, json={"region": "Berlin"}, headers=admin())
    assert r.status_code == 428
    r = await c.patch(url, json={"region": "Berlin"}, headers=admin(**{"If-Match": '"1"'}))
    assert r.status_code == 200 and r.headers["etag"] == '"2"' and r.json()["region"] == "Berlin"
    r = await c.patch(url, json={"region": "Hamburg"}, headers=admin(**{"If-Match": '"1"'}))
    assert r.status_code == 412 and r.headers["content-type"] == "application/problem+json"
    assert (await c.get(url, headers=admin())).json()["region"] == "Berlin"
    updated = await lead_app.outbox("LeadUpdated")
    assert [e["subject_version"] for e in updated] == [2]
    assert updated[0]["data"]["changed"] == ["region"] and updated[0]["data"]["cause"] == "edit"


async def test_disqualify_delete_and_erase(lead_app):
    c = lead_app.client
    lead = await create(c)
    url = f"/v1/leads/{lead['id']}"
    r = await c.post(url + "/disqualify", json={"reason": "no budget"}, headers=admin())
    assert r.status_code == 200 and r.json()["status"] == "disqualified"
    [event] = await lead_app.outbox("LeadDisqualified")
    assert event["data"] == {"lead_id": lead["id"], "reason": "no budget", "owner_id": None}
    assert (await c.post(url + "/disqualify", json={"reason": "x"}, headers=admin())).status_code == 409

    other = await create(c, a_lead("eve@initech.com"))
    assert (await c.delete(f"/v1/leads/{other['id']}", headers=admin())).status_code == 204
    assert (await c.get(f"/v1/leads/{other['id']}", headers=admin())).status_code == 404
    listed = (await c.get("/v1/leads", headers=admin())).json()["items"]
    assert other["id"] not in [i["id"] for i in listed]

    assert (await c.post(url + "/erase", headers=rep())).status_code == 403
    r = await c.post(url + "/erase", headers=admin())
    assert r.status_code == 200 and r.json()["erased_lead_ids"] == [lead["id"]]
    erased = (await c.get(url, headers=admin())).json()
    assert erased["contact"]["email"] is None and erased["contact"]["first_name"] is None
    assert erased["erased_at"] is not None
    assert (await c.get("/v1/leads", params={"q": "ada"}, headers=admin())).json()["items"] == []
    [event] = await lead_app.outbox("LeadErased")
    assert event["data"] == {"lead_id": lead["id"]} and event["subject_version"] == erased["version"]
    # the person can come back as a new lead afterwards
    again = await create(c, a_lead())
    assert again["id"] != lead["id"]


async def test_tenant_isolation(lead_app):
    c = lead_app.client
    lead = await create(c, headers=admin("org-a"))
    other_org = admin("org-b")
    assert (await c.get(f"/v1/leads/{lead['id']}", headers=other_org)).status_code == 404
    assert (await c.patch(f"/v1/leads/{lead['id']}", json={"region": "x"},
                          headers={**other_org, "If-Match": "*"})).status_code == 404
    assert (await c.post(f"/v1/leads/{lead['id']}/erase", headers=other_org)).status_code == 404
    assert (await c.get("/v1/leads", headers=other_org)).json()["items"] == []
    assert (await c.get(f"/v1/contacts/{lead['contact']['contact_id']}", headers=other_org)).status_code == 404
    assert (await c.get("/v1/activities", params={"lead_id": lead["id"]}, headers=other_org)).status_code == 404
    # the same email in another org is another lead with another contact
    theirs = await create(c, headers=other_org)
    assert theirs["id"] != lead["id"] and theirs["contact"]["contact_id"] != lead["contact"]["contact_id"]
    # a rep sees only their own leads
    assert (await c.get(f"/v1/leads/{lead['id']}", headers=rep("org-a"))).status_code == 404


def envelope_for(data, lead_id, version, org="org-a"):
    return make_event(data, org_id=org_id(org), subject_id=lead_id, subject_version=version)


async def test_consumed_events_update_the_lead_and_stale_ones_are_ignored(lead_app):
    c = lead_app.client
    lead = await create(c)
    dispatch = lead_app.context.dispatcher.dispatch
    assigned = envelope_for(LeadAssignedV1(lead_id=lead["id"], owner_id="rep-7", team_id="team-1",
                                           reason="round robin"), lead["id"], 3)
    await dispatch(assigned)
    await dispatch(assigned)  # a redelivery has no second effect
    stale = envelope_for(LeadAssignedV1(lead_id=lead["id"], owner_id="rep-old", reason="old"), lead["id"], 2)
    await dispatch(stale)
    got = (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()
    assert got["owner_id"] == "rep-7" and got["team_id"] == "team-1" and got["version"] == 2
    # LeadAssigned told every consumer the first owner already: no LeadUpdated echoes it (issue 21)
    assert await lead_app.outbox("LeadUpdated") == []
    # the owner now sees it
    assert (await c.get(f"/v1/leads/{lead['id']}", headers=rep("org-a", "rep-7"))).status_code == 200
    # a reassignment is echoed: a snapshot made before it (an edit racing it) named the owner before
    await dispatch(envelope_for(LeadAssignedV1(lead_id=lead["id"], owner_id="rep-8", team_id="team-1",
                                               reason="reassigned"), lead["id"], 4))
    [echo] = await lead_app.outbox("LeadUpdated")
    assert (echo["data"]["cause"], echo["data"]["lead"]["owner_id"], echo["subject_version"]) == \
        ("assignment", "rep-8", 3)
    await dispatch(envelope_for(LeadAssignedV1(lead_id=lead["id"], owner_id="rep-7", team_id="team-1",
                                               reason="round robin"), lead["id"], 5))

    now = utcnow()
    await dispatch(envelope_for(LeadLostV1(lead_id=lead["id"], pipeline_id="p", reason="price", lost_at=now,
                                           reengage_at=now), lead["id"], 5))
    await dispatch(envelope_for(LeadWonV1(lead_id=lead["id"], pipeline_id="p", won_at=now), lead["id"], 4))
    assert (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()["status"] == "nurturing"
    # another org's event about this lead id does nothing
    await dispatch(envelope_for(LeadWonV1(lead_id=lead["id"], pipeline_id="p", won_at=now), lead["id"], 9, "org-b"))
    assert (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()["status"] == "nurturing"

    # Won at another value: the lead shows what it was won at (not the 8,000 it was created with), once.
    priced = await create(c, a_lead("won@acme.io", value="8000.00", currency="EUR"))
    won = envelope_for(LeadWonV1(lead_id=priced["id"], pipeline_id="p", value=Decimal("9000"), currency="USD",
                                 won_at=now), priced["id"], 1)
    await dispatch(won)
    await dispatch(won)
    got = (await c.get(f"/v1/leads/{priced['id']}", headers=admin())).json()
    assert (got["status"], got["value"], got["currency"], got["version"]) == ("won", "9000.00", "USD", 2)
    snapshots = [e["data"] for e in await lead_app.outbox("LeadUpdated") if e["subject_id"] == priced["id"]]
    assert [(s["lead"]["value"], s["lead"]["currency"], s["changed"]) for s in snapshots] == [
        ("9000.00", "USD", ["currency", "status", "value"])]

    sent = EmailSentV1(delivery_id="d-1", lead_id=lead["id"], message_id="m-1", sent_at=now, sequence_id="s-1",
                       step=1)
    await dispatch(envelope_for(sent, lead["id"], 1))
    await dispatch(envelope_for(sent, lead["id"], 1))  # same delivery under a new event id
    timeline = (await c.get("/v1/activities", params={"lead_id": lead["id"]}, headers=admin())).json()["items"]
    assert [(a["kind"], a["source"], a["rep_id"]) for a in timeline] == [("email", "sequence", "rep-7")]
    [logged] = await lead_app.outbox("ActivityLogged")
    assert logged["data"]["kind"] == "email" and logged["data"]["rep_id"] == "rep-7"


async def test_activities_are_logged_and_listed(lead_app):
    c = lead_app.client
    lead = await create(c)
    body = {"lead_id": lead["id"], "kind": "call", "occurred_at": "2026-01-05T10:00:00Z",
            "duration_seconds": 300, "outcome": "connected"}
    key = str(uuid.uuid4())
    r = await c.post("/v1/activities", json=body, headers=admin(**{"Idempotency-Key": key}))
    assert r.status_code == 201 and r.json()["rep_id"] == "admin-1"
    replay = await c.post("/v1/activities", json=body, headers=admin(**{"Idempotency-Key": key}))
    assert replay.json()["id"] == r.json()["id"]
    assert (await c.post("/v1/activities", json={**body, "kind": "note"},
                         headers=admin(**{"Idempotency-Key": key}))).status_code == 409
    bad = await c.post("/v1/activities", json={**body, "kind": "fax"}, headers=admin())
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "kind"
    [event] = await lead_app.outbox("ActivityLogged")
    assert event["data"]["duration_seconds"] == 300 and event["data"]["kind"] == "call"


async def test_editing_a_shared_contact_updates_its_leads(lead_app):
    c = lead_app.client
    lead = await create(c, a_lead("old@globex.com"))
    contact_url = f"/v1/contacts/{lead['contact']['contact_id']}"
    etag = (await c.get(contact_url, headers=admin())).headers["etag"]
    r = await c.patch(contact_url, json={"email": "new@globex.com"}, headers=admin(**{"If-Match": etag}))
    assert r.status_code == 200 and r.json()["email"] == "new@globex.com"
    assert (await c.patch(contact_url, json={"title": "x"}, headers=admin(**{"If-Match": etag}))).status_code == 412
    got = (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()
    assert got["contact"]["email"] == "new@globex.com" and got["version"] == 2
    assert [i["id"] for i in (await c.get("/v1/leads", params={"q": "new@globex"}, headers=admin())).json()["items"]] \
        == [lead["id"]]
    [updated] = await lead_app.outbox("LeadUpdated")
    assert updated["data"]["changed"] == ["contact.email"]
    # the same person submitting again lands on the same lead
    again = await create(c, a_lead("new@globex.com", region="Bavaria"))
    assert again["id"] == lead["id"]


def manager(org="org-a"):
    from salesflow_shared.testing import auth_headers
    return auth_headers(org_id(org), "manager", "manager-1")


async def test_a_rep_reaches_only_the_contacts_and_companies_of_its_leads(lead_app):
    c = lead_app.client
    mine = await create(c, a_lead("ada@acme.io", owner_id="rep-1"))
    theirs = await create(c, a_lead("bob@globex.com", company={"name": "Globex"}, owner_id="rep-2"))
    my_contact = f"/v1/contacts/{mine['contact']['contact_id']}"
    their_contact = f"/v1/contacts/{theirs['contact']['contact_id']}"
    their_company = f"/v1/companies/{theirs['company']['company_id']}"
    stranger = rep("org-a", "rep-9")  # owns nothing
    for url, change in ((my_contact, {"phone": "+1 555"}), (their_contact, {"phone": "+1 555"}),
                        (their_company, {"industry": "x"})):
        assert (await c.get(url, headers=stranger)).status_code == 404
        assert (await c.patch(url, json=change, headers={**stranger, "If-Match": "*"})).status_code == 404
    assert (await c.get("/v1/contacts", params={"q": "o"}, headers=stranger)).json()["items"] == []
    assert (await c.get("/v1/companies", headers=stranger)).json()["items"] == []
    # rep-1 lists and reads its own lead's contact and company only, and may change them
    listed = (await c.get("/v1/contacts", headers=rep("org-a", "rep-1"))).json()["items"]
    assert [(i["email"], i["phone"]) for i in listed] == [("ada@acme.io", None)]
    assert [i["name"] for i in (await c.get("/v1/companies", headers=rep("org-a", "rep-1"))).json()["items"]] \
        == ["Acme"]
    assert (await c.get(their_contact, headers=rep("org-a", "rep-1"))).status_code == 404
    r = await c.patch(my_contact, json={"phone": "+49 30 1234"}, headers={**rep("org-a", "rep-1"), "If-Match": "*"})
    assert r.status_code == 200 and r.json()["phone"] == "+49 30 1234"
    # managers and admins: the whole org
    assert len((await c.get("/v1/contacts", headers=manager())).json()["items"]) == 2
    assert (await c.get(their_company, headers=manager())).status_code == 200


async def test_a_previous_owner_keeps_read_only_access_after_a_hand_over(lead_app):
    c = lead_app.client
    lead = await create(c, a_lead("ada@acme.io", owner_id="rep-1"))
    url = f"/v1/leads/{lead['id']}"
    await lead_app.context.dispatcher.dispatch(envelope_for(LeadAssignedV1(
        lead_id=lead["id"], owner_id="am-1", previous_owner_id="rep-1", reason="won: account management"),
        lead["id"], 2))
    closer = rep("org-a", "rep-1")
    got = await c.get(url, headers=closer)
    assert got.status_code == 200 and got.json()["owner_id"] == "am-1"
    assert [i["id"] for i in (await c.get("/v1/leads", headers=closer)).json()["items"]] == [lead["id"]]
    assert (await c.get("/v1/activities", params={"lead_id": lead["id"]}, headers=closer)).status_code == 200
    contact_url = f"/v1/contacts/{lead['contact']['contact_id']}"
    assert (await c.get(contact_url, headers=closer)).status_code == 200
    # read-only: every change is refused
    assert (await c.patch(url, json={"region": "x"}, headers={**closer, "If-Match": "*"})).status_code == 403
    assert (await c.patch(contact_url, json={"title": "x"}, headers={**closer, "If-Match": "*"})).status_code == 403
    assert (await c.post(url + "/disqualify", json={"reason": "x"}, headers=closer)).status_code == 403
    assert (await c.post("/v1/activities", json={"lead_id": lead["id"], "kind": "call",
                                                 "occurred_at": "2026-01-05T10:00:00Z"},
                         headers=closer)).status_code == 403
    # the new owner may change it; a rep that never owned it sees nothing
    am = rep("org-a", "am-1")
    assert (await c.patch(contact_url, json={"title": "CEO"}, headers={**am, "If-Match": "*"})).status_code == 200
    assert (await c.get(url, headers=rep("org-a", "rep-2"))).status_code == 404


async def test_erase_reaches_stored_responses_the_company_and_activity_events(lead_app):
    from salesflow_shared.infra_tables import idempotency_table

    c = lead_app.client
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    body = a_lead("quinn@zyxcorp.example", company={"name": "Zyxcorp"})
    lead = (await c.post("/v1/leads", json=body, headers=admin(**key))).json()
    shared = await create(c, a_lead("other@sharedco.example", company={"name": "Sharedco"}))
    await create(c, a_lead("third@sharedco.example", company={"name": "Sharedco"}))
    await c.post("/v1/activities", json={"lead_id": lead["id"], "kind": "call", "occurred_at": "2026-01-05T10:00:00Z",
                                         "subject": "Call Quinn at Zyxcorp"}, headers=admin())
    assert (await c.post(f"/v1/leads/{lead['id']}/erase", headers=admin())).status_code == 200
    assert (await c.post(f"/v1/leads/{shared['id']}/erase", headers=admin())).status_code == 200

    stored = await lead_app.scalar(sa.select(sa.func.string_agg(sa.cast(idempotency_table.c.response_body, sa.Text),
                                                                "|")).where(idempotency_table.c.org_id == org_id()))
    assert "quinn" not in stored.lower() and "zyxcorp" not in stored.lower()
    events = json.dumps(await lead_app.outbox())
    assert "Quinn" not in events and "Zyxcorp" not in events and "zyxcorp" not in events
    # a company only the erased lead linked is scrubbed; one other leads still link stays theirs
    names = [co["name"] for co in (await c.get("/v1/companies", headers=admin())).json()["items"]]
    assert "Zyxcorp" not in names and "Sharedco" in names
    got = (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()
    assert got["company"]["name"] is None and got["company"]["company_id"] is None
    # retrying the original create has no second effect and returns no personal data
    replay = await c.post("/v1/leads", json=body, headers=admin(**key))
    assert replay.status_code == 410 and replay.headers["content-type"].startswith("application/problem+json")
    assert "zyxcorp" not in replay.text.lower() and "quinn" not in replay.text.lower()
    assert "zyxcorp" not in (await c.get("/v1/leads/export", headers=admin())).text.lower()


async def test_a_currency_must_be_on_the_iso_4217_list(lead_app):
    c = lead_app.client
    for code in ("XYZ", "EURO", "eu"):
        r = await c.post("/v1/leads", json=a_lead(f"{code}@acme.io", currency=code), headers=admin())
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "currency" in r.text and "ISO 4217" in r.text
    lead = await create(c, a_lead("chf@acme.io", currency="chf"))
    assert lead["currency"] == "CHF"
    r = await c.patch(f"/v1/leads/{lead['id']}", json={"currency": "ABC"},
                      headers=admin(**{"If-Match": f'"{lead["version"]}"'}))
    assert r.status_code == 422 and "currency" in r.text
