"""The inbound (web-form) journey end to end, through HTTP against the running service processes, the real
PostgreSQL and RabbitMQ, a local SMTP server, a fake Mailchimp and a fake enrichment provider.

An admin sets everything up; a signed web-form submission becomes a scored, enriched lead that is routed and
assigned (territory rule, round robin) with a reason, enters the first stage with its tasks, gets the welcome
email once and one Mailchimp upsert; a logged meeting meets the stage goal (open tasks skipped), the rep gets the
milestone message, the lead is won (reaching the rep's quota: the rep is congratulated once more), and metrics
show it everywhere."""
from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal

from e2e_testkit import (
    ASSIGNMENT,
    DACH_REPS,
    LEAD,
    METRICS,
    NOTIFICATION,
    PIPELINE,
    World,
    admin,
    all_pages,
    new_org,
    ok,
    poll,
    position,
    rep,
    rep_email,
    setup_inbound_org,
    signed,
    smtp_to,
    submit_form,
)


async def test_inbound_web_form_journey(any_world: World):
    world = any_world
    org = new_org("inbound")
    lead_api = world.client(LEAD, admin(org))
    pipeline_api = world.client(PIPELINE, admin(org))
    assignment_api = world.client(ASSIGNMENT, admin(org))
    notification_api = world.client(NOTIFICATION, admin(org))
    metrics_api = world.client(METRICS, admin(org))

    # ------------------------------------------------------------------ the admin sets the org up
    setup = await setup_inbound_org(world, org)
    pipeline_id, form, territory = setup.pipeline_id, setup.form, setup.territory_id
    qualification, negotiation, decision = setup.stage_ids
    milestone = setup.milestone

    # ------------------------------------------------------------------ a signed web-form submission
    email = "ada@analytical-engines.de"
    forged = json.dumps({"email": email}).encode()
    refused = await lead_api.post(f"/v1/forms/{form['id']}/submissions", content=forged,
                                  headers=signed("whsec_not-the-secret", forged))
    assert refused.status_code == 401, refused.text
    accepted = await submit_form(lead_api, form, {
        "email": email, "first": "Ada", "last": "Lovelace", "phone": "+49 30 1234567", "job": "CTO",
        "company": "Analytical Engines GmbH", "country": "DE", "budget": "5000"})
    assert accepted["status"] == "accepted" and accepted["outcome"] == "created"
    lead_id = accepted["lead_id"]
    listed = await all_pages(lead_api, "/v1/leads")
    assert [item["id"] for item in listed] == [lead_id]  # the forged post created nothing

    async def scored_and_enriched():
        lead = await ok(lead_api.get(f"/v1/leads/{lead_id}"))
        assert lead["enrichment_status"] == "done"
        return lead
    lead = await poll(scored_and_enriched, timeout=20)
    assert lead["score"] == 30 and lead["source"] == "web_form" and lead["form_id"] == form["id"]
    assert lead["company"]["name"] == "Analytical Engines GmbH"  # the provider never overrides a person's input
    assert lead["company"]["industry"] == "Aerospace" and lead["company"]["size"] == "201-500"
    assert [r["email"] for r in world.provider.provider.requests].count(email) == 1

    # ------------------------------------------------------------------ routed and assigned, with a reason
    async def assigned():
        items = (await ok(assignment_api.get("/v1/assignments", params={"lead_id": lead_id})))["items"]
        assert len(items) == 1, items
        return items[0]
    decision_row = await poll(assigned, timeout=20)
    owner = decision_row["owner_id"]
    assert owner in DACH_REPS
    assert decision_row["trigger"] == "lead_created" and decision_row["rule_id"] == "dach"
    assert decision_row["reason"] and decision_row["territory_id"] == territory

    async def lead_has_owner():
        assert (await ok(lead_api.get(f"/v1/leads/{lead_id}")))["owner_id"] == owner
    await poll(lead_has_owner, timeout=20)

    # ------------------------------------------------------------------ first stage with its tasks
    async def in_first_stage():
        pos = await position(pipeline_api, lead_id)
        assert pos["status"] == "active" and pos["stage"]["stage_id"] == qualification, pos
        assert pos["owner_id"] == owner and len(pos["open_tasks"]) == 2, pos
        return pos
    pos = await poll(in_first_stage, timeout=20)
    assert pos["pipeline"]["pipeline_id"] == pipeline_id and pos["history"][0]["entry_reason"] == "entry"
    assert {t["assignee_id"] for t in pos["open_tasks"]} == {owner}
    first_stage_tasks = {t["id"] for t in pos["open_tasks"]}

    # ------------------------------------------------------------------ welcome email once, one Mailchimp upsert
    async def welcomed():
        assert len(smtp_to(world.smtp, email)) >= 1
        assert world.mailchimp.calls_to("PUT", f"/lists/inbound/members/{hashlib.md5(email.encode()).hexdigest()}")
    await poll(welcomed, timeout=30)

    async def sequence_done():
        deliveries = [d for d in (await ok(notification_api.get("/v1/deliveries", params={"lead_id": lead_id})))[
            "items"] if d["recipient_kind"] != "rep"]  # reminders of the tasks stay pending until they are due
        assert len(deliveries) >= 2 and all(d["status"] not in ("pending", "sending") for d in deliveries), \
            [(d["kind"], d["recipient_kind"], d["status"], d.get("last_error"), d.get("reason")) for d in deliveries]
        return deliveries
    deliveries = await poll(sequence_done, timeout=30)
    welcome = smtp_to(world.smtp, email)
    assert len(welcome) == 1, [m["Subject"] for m in welcome]
    assert welcome[0]["Subject"] == "Welcome, Ada"
    upserts = world.mailchimp.calls_to("PUT", f"/lists/inbound/members/{hashlib.md5(email.encode()).hexdigest()}")
    assert len(upserts) == 1 and upserts[0].json["email_address"] == email
    member = world.mailchimp.members[("inbound", upserts[0].path.rsplit("/", 1)[1])]
    assert member["status"] == "subscribed" and member["merge_fields"].get("FNAME") == "Ada"
    assert [(d["kind"], d["status"]) for d in deliveries if d["recipient_kind"] == "prospect"] == [("email", "sent")]

    # ------------------------------------------------------------------ a logged meeting meets the goal
    rep_lead_api = world.client(LEAD, rep(org, owner))
    await ok(rep_lead_api.post("/v1/activities", json={
        "lead_id": lead_id, "kind": "meeting", "occurred_at": datetime.now(UTC).isoformat(),
        "duration_seconds": 1800, "subject": "Qualification meeting"}), 201)

    async def advanced():
        pos = await position(pipeline_api, lead_id)
        assert pos["stage"]["stage_id"] == negotiation, pos["stage"]
        return pos
    pos = await poll(advanced, timeout=20)
    assert pos["history"][-1]["entry_reason"] == "goal_met" and pos["history"][0]["exit_reason"] == "goal_met"
    skipped = await all_pages(pipeline_api, "/v1/tasks", lead_id=lead_id, status="skipped")
    assert {t["id"] for t in skipped} == first_stage_tasks
    assert len(pos["open_tasks"]) == 2  # the negotiation stage's own tasks

    # ------------------------------------------------------------------ the rep gets the milestone message
    rep_address = rep_email(org, owner)

    async def congratulated():
        subjects = [m["Subject"] for m in smtp_to(world.smtp, rep_address)]
        assert subjects.count(f"Congratulations: {milestone['name']}") == 1, subjects
    await poll(congratulated, timeout=30)

    # ------------------------------------------------------------------ won, which reaches the rep's quota
    quota_rule = await ok(notification_api.post("/v1/milestones", json={
        "name": "Quota reached", "kind": "quota_reached", "channels": ["email"]}), 201)
    [quota] = (await ok(metrics_api.get("/v1/quotas", params={"scope": "rep", "scope_id": owner})))["items"]
    quota_etag = (await metrics_api.get(f"/v1/quotas/{quota['quota_id']}")).headers["etag"]
    await ok(metrics_api.patch(f"/v1/quotas/{quota['quota_id']}", json={"amount": "5000"},
                               headers={"If-Match": quota_etag}))
    rep_pipeline_api = world.client(PIPELINE, rep(org, owner))
    await ok(rep_pipeline_api.post(f"/v1/positions/{lead_id}/won", json={"value": "5000.00", "currency": "EUR"}))
    assert (await position(pipeline_api, lead_id))["status"] == "won"

    async def lead_marked_won():
        assert (await ok(lead_api.get(f"/v1/leads/{lead_id}")))["status"] == "won"
    await poll(lead_marked_won, timeout=20)

    # ------------------------------------------------------------------ metrics show it
    async def report(name: str, **params):
        return (await ok(metrics_api.get(f"/v1/reports/{name}", params=params)))["rows"]

    def only_row(rows):
        # An assertion, not an unpacking: an empty report means "not projected yet", and poll retries.
        assert len(rows) == 1, rows
        return rows[0]

    async def metrics_show_the_win():
        funnel = {r["stage_id"]: r for r in await report("funnel", pipeline=pipeline_id)}
        assert funnel[qualification]["reached"] == 1 and funnel[negotiation]["reached"] == 1, funnel
        assert funnel.get(decision, {"reached": 0})["reached"] == 0
        win = only_row(await report("win-rate"))
        assert (win["won"], win["lost"], win["win_rate_pct"]) == (1, 0, 100.0)
        size = only_row(await report("deal-size"))
        assert (size["currency"], size["deals"], Decimal(size["total"])) == ("EUR", 1, Decimal("5000"))
        cycle = only_row(await report("sales-cycle"))
        assert cycle["won"] == 1 and 0 <= cycle["cycle_mean_days"] < 1
        response = only_row(await report("response-time"))
        assert (response["group"], response["leads"], response["responded"]) == (owner, 1, 1), response
        assert response["median_hours"] is not None and response["median_hours"] < 1
        quotas = {r["scope_id"]: r for r in await report("quota-attainment", period="quarter")}
        assert set(DACH_REPS) <= set(quotas), quotas
        assert Decimal(quotas[owner]["actual"]) == Decimal("5000") and quotas[owner]["attainment_pct"] == 100.0
        other = next(r for r in DACH_REPS if r != owner)
        assert Decimal(quotas[other]["actual"]) == 0
    await poll(metrics_show_the_win, timeout=30)

    # ------------------------------------------------------------------ the rep hears of the quota, once
    async def quota_congratulated():
        mails = [m for m in smtp_to(world.smtp, rep_address)
                 if m["Subject"] == f"Congratulations: {quota_rule['name']}"]
        assert len(mails) == 1, [m["Subject"] for m in smtp_to(world.smtp, rep_address)]
        assert "100.0% of your quarter quota: 5000.00 of 5000.00 EUR" in mails[0].get_body(("plain",)).get_content()
    await poll(quota_congratulated, timeout=30)

    async def recorded_sent_once():  # the relay accepted it before the worker recorded it: it may lag a moment
        sent = await all_pages(notification_api, "/v1/deliveries", status="sent")
        assert [d["rule_id"] for d in sent].count(quota_rule["id"]) == 1, sent
    await poll(recorded_sent_once, timeout=20)

    # ------------------------------------------------------------------ every email and Mailchimp call, exactly
    async def nothing_pending():
        items = (await ok(notification_api.get("/v1/deliveries", params={"limit": 200})))["items"]
        assert not [d for d in items if d["status"] in ("pending", "sending")], items
    await poll(nothing_pending, timeout=30)  # the won lead's task reminders were cancelled with its tasks
    other = next(r for r in DACH_REPS if r != owner)
    mails = {address: sorted(m["Subject"] for m in smtp_to(world.smtp, address))
             for address in (email, rep_address, rep_email(org, other))}
    assert mails == {
        email: ["Welcome, Ada"],
        rep_address: sorted(["New lead assigned to you: Ada Lovelace", f"Congratulations: {milestone['name']}",
                             f"Congratulations: {quota_rule['name']}"]),
        rep_email(org, other): [],
    }, mails
    member = hashlib.md5(email.encode()).hexdigest()
    assert [(c.method, c.path.split("/lists/")[1]) for c in world.mailchimp.calls if member in c.path] == [
        ("PUT", f"inbound/members/{member}"), ("POST", f"inbound/members/{member}/tags")]

    for client in (lead_api, pipeline_api, assignment_api, notification_api, metrics_api, rep_lead_api,
                   rep_pipeline_api):
        await client.aclose()

