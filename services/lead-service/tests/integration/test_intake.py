"""Web-form intake on PostgreSQL + RabbitMQ: signed JSON, browser posts, signatures, honeypot, de-dup,
a broken mapping fixed and reprocessed."""
from __future__ import annotations

import json
import time

import pytest
from lead_testkit import admin, create_form, signed_headers, submit_url

from lead_service.collaborators import collaborators

pytestmark = pytest.mark.asyncio(loop_scope="module")

FORM = {"name": "Contact us", "mapping": {"email": "contact.email", "name": "contact.full_name",
                                          "company": "company.name", "job": "contact.title"},
        "defaults": {"product_line": "enterprise"}, "required": ["contact.email"]}


async def make_form(client, **changes):
    return await create_form(client, FORM, **changes)


async def test_signed_json_submission_creates_a_lead(lead_app):
    c = lead_app.client
    form = await make_form(c)
    body = json.dumps({"email": "Grace@Hopper.dev", "name": "Grace Hopper", "company": "Hopper Ltd",
                       "job": "VP Engineering"}).encode()
    r = await c.post(submit_url(form), content=body, headers=signed_headers(form["signing_secret"], body))
    assert r.status_code == 201, r.text
    result = r.json()
    assert result["status"] == "accepted" and result["outcome"] == "created"
    lead = (await c.get(f"/v1/leads/{result['lead_id']}", headers=admin())).json()
    assert lead["contact"] == {**lead["contact"], "first_name": "Grace", "last_name": "Hopper",
                               "email": "grace@hopper.dev", "title": "VP Engineering"}
    assert lead["source"] == "web_form" and lead["product_line"] == "enterprise" and lead["form_id"] == form["id"]
    [created] = await lead_app.outbox("LeadCreated")
    assert created["data"]["lead"]["form_id"] == form["id"]


async def test_bad_and_expired_signatures_are_refused_and_store_nothing(lead_app):
    c = lead_app.client
    form = await make_form(c)
    body = json.dumps({"email": "x@corp.com"}).encode()
    wrong = signed_headers("whsec_not-the-secret", body)
    r = await c.post(submit_url(form), content=body, headers=wrong)
    assert r.status_code == 401 and r.json()["type"] == "urn:salesflow:problem:bad-signature"
    old = signed_headers(form["signing_secret"], body, at=int(time.time()) - 301)
    r = await c.post(submit_url(form), content=body, headers=old)
    assert r.status_code == 401 and "300 s" in r.json()["detail"]
    tampered = signed_headers(form["signing_secret"], body)
    r = await c.post(submit_url(form), content=body.replace(b"x@", b"y@"), headers=tampered)
    assert r.status_code == 401
    r = await c.post(submit_url(form), content=body, headers={"Content-Type": "application/json",
                                                                "Salesflow-Signature": "garbage"})
    assert r.status_code == 401
    r = await c.post("/v1/forms/no-such-form/submissions", content=body,
                     headers=signed_headers(form["signing_secret"], body))
    assert r.status_code == 404
    listed = (await c.get(submit_url(form), headers=admin())).json()["items"]
    assert listed == [] and await lead_app.outbox() == []


async def test_browser_post_with_public_key_honeypot_and_redirect(lead_app):
    c = lead_app.client
    form = await make_form(c, redirect_url="https://example.com/thanks")
    fields = {"sf_key": form["public_key"], "email": "ann@initech.com", "name": "Ann", "website": ""}
    r = await c.post(submit_url(form), data=fields)
    assert r.status_code == 303 and r.headers["location"].startswith("https://example.com/thanks?submission=")
    assert "status=accepted" in r.headers["location"]
    r = await c.post(submit_url(form), data={**fields, "sf_key": "pk_wrong"})
    assert r.status_code == 401
    # the honeypot: the bot is told "thanks", the submission is stored as spam, no lead
    r = await c.post(submit_url(form), data={**fields, "email": "bot@spam.com", "website": "http://spam"})
    assert r.status_code == 303
    spam = (await c.get(submit_url(form), params={"status": "spam"}, headers=admin())).json()["items"]
    assert len(spam) == 1 and "bot%40spam.com" in spam[0]["raw_body"]
    leads = (await c.get("/v1/leads", headers=admin())).json()["items"]
    assert [lead["contact"]["email"] for lead in leads] == ["ann@initech.com"]


async def test_browser_posts_are_rate_limited_per_ip(lead_app):
    c = lead_app.client
    form = await make_form(c)
    limit = lead_app.context.settings.ip_rate_limit_per_minute
    limiter = collaborators(lead_app.context).rate_limiter
    real_clock, frozen = limiter.clock, limiter.clock()
    limiter.clock = lambda: frozen  # the limiter's injected clock: no refill while the test runs
    try:
        statuses, answers = [], []
        for i in range(limit + 2):
            r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "email": f"p{i}@corp{i}.com"})
            statuses.append(r.status_code)
            answers.append(r)
        assert statuses[:limit] == [201] * limit
        assert statuses[limit:] == [429, 429]
        # IETF RateLimit fields on every answer the limit acted on; 30 a minute is one every 2 s
        assert limit == 30
        first = answers[0].headers
        assert (first["ratelimit-limit"], first["ratelimit-remaining"], first["ratelimit-reset"]) == ("30", "29", "2")
        assert "retry-after" not in first
        refused = r.headers
        assert (refused["ratelimit-limit"], refused["ratelimit-remaining"], refused["ratelimit-reset"]) == (
            "30", "0", "60")  # empty: 60 s until all 30 are back
        assert refused["retry-after"] == "2"  # but the next post is allowed in 2 s
        # a minute later the bucket has refilled
        limiter.clock = lambda: frozen + 2
        r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "email": "soon@corp.com"})
        assert r.status_code == 201 and r.headers["ratelimit-remaining"] == "0"
        limiter.clock = lambda: frozen + 62
        r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "email": "late@corp.com"})
        assert r.status_code == 201
    finally:
        limiter.clock = real_clock


async def test_duplicates_by_idempotency_key_and_same_email_resubmission(lead_app):
    c = lead_app.client
    form = await make_form(c)
    body = json.dumps({"email": "kim@umbrella.com", "name": "Kim"}).encode()
    headers = signed_headers(form["signing_secret"], body, **{"Idempotency-Key": "evt-1"})
    first = await c.post(submit_url(form), content=body, headers=headers)
    again = await c.post(submit_url(form), content=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["submission_id"] == first.json()["submission_id"]
    assert again.headers["idempotent-replayed"] == "true"
    # the provider's own submission id in the payload de-duplicates too
    body2 = json.dumps({"email": "lee@umbrella.com", "submission_id": "typeform-77"}).encode()
    ids = {(await c.post(submit_url(form), content=body2,
                         headers=signed_headers(form["signing_secret"], body2))).json()["submission_id"]
           for _ in range(2)}
    assert len(ids) == 1
    # the same email again (another submission): the open lead is updated, not duplicated
    body3 = json.dumps({"email": "KIM@umbrella.com", "job": "Head of Sales"}).encode()
    r = await c.post(submit_url(form), content=body3, headers=signed_headers(form["signing_secret"], body3))
    assert r.status_code == 200 and r.json()["outcome"] == "updated"
    assert r.json()["lead_id"] == first.json()["lead_id"]
    lead = (await c.get(f"/v1/leads/{r.json()['lead_id']}", headers=admin())).json()
    assert lead["contact"]["title"] == "Head of Sales" and lead["version"] == 2
    timeline = (await c.get("/v1/activities", params={"lead_id": lead["id"]}, headers=admin())).json()["items"]
    assert [(a["subject"], a["source"]) for a in timeline] == [("form resubmitted", "form")]
    assert len(await lead_app.outbox("LeadCreated")) == 2
    [updated] = await lead_app.outbox("LeadUpdated")
    assert updated["data"]["cause"] == "form_resubmitted" and "contact.title" in updated["data"]["changed"]


async def test_broken_mapping_is_stored_then_reprocessed_after_the_fix(lead_app):
    c = lead_app.client
    form = await make_form(c, mapping={"mail": "contact.email", "company": "company.name"})
    bodies = [json.dumps({"e_mail": f"user{i}@wayne.com", "company": "Wayne"}).encode() for i in range(2)]
    for body in bodies:
        r = await c.post(submit_url(form), content=body, headers=signed_headers(form["signing_secret"], body))
        assert r.status_code == 202 and r.json()["status"] == "failed"
        assert r.json()["errors"][0]["field"] == "contact.email"
        assert "mapped from 'mail'" in r.json()["errors"][0]["message"]
    failed = (await c.get(submit_url(form), params={"status": "failed"}, headers=admin())).json()["items"]
    assert len(failed) == 2 and (await c.get("/v1/leads", headers=admin())).json()["items"] == []

    bad = await c.patch(f"/v1/forms/{form['id']}", json={"mapping": {"e_mail": "contact.mail"}},
                        headers=admin(**{"If-Match": '"1"'}))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "mapping.e_mail"
    fixed = await c.patch(f"/v1/forms/{form['id']}", json={"mapping": {"e_mail": "contact.email",
                                                                      "company": "company.name"}},
                          headers=admin(**{"If-Match": '"1"'}))
    assert fixed.status_code == 200
    one = await c.post(f"{submit_url(form)}/{failed[0]['id']}/reprocess", headers=admin())
    assert one.json()["status"] == "accepted"
    rest = await c.post(f"{submit_url(form)}/reprocess", headers=admin())
    assert rest.json()["reprocessed"] == 1 and rest.json()["accepted"] == 1
    leads = (await c.get("/v1/leads", headers=admin())).json()["items"]
    assert sorted(lead["contact"]["email"] for lead in leads) == ["user0@wayne.com", "user1@wayne.com"]
    assert (await c.get(submit_url(form), params={"status": "failed"}, headers=admin())).json()["items"] == []


async def test_malformed_submissions_get_problems(lead_app):
    c = lead_app.client
    form = await make_form(c)
    body = b"[1, 2]"
    r = await c.post(submit_url(form), content=body, headers=signed_headers(form["signing_secret"], body))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
    r = await c.post(submit_url(form), content=b"<xml/>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 415
    big = json.dumps({"email": "a@b.com", "notes": "x" * 70_000}).encode()
    r = await c.post(submit_url(form), content=big, headers=signed_headers(form["signing_secret"], big))
    assert r.status_code == 413
    bad_form = await c.post("/v1/forms", json={**FORM, "required": ["contact.nope"]}, headers=admin())
    assert bad_form.status_code == 422 and bad_form.json()["errors"][0]["field"] == "required"
    bad_default = await c.post("/v1/forms", json={**FORM, "defaults": {"source": "carrier-pigeon"}}, headers=admin())
    assert bad_default.status_code == 422 and bad_default.json()["errors"][0]["field"] == "defaults.source"
    # a retried form definition (same Idempotency-Key) creates one form
    first = await c.post("/v1/forms", json=FORM, headers=admin(**{"Idempotency-Key": "form-1"}))
    again = await c.post("/v1/forms", json=FORM, headers=admin(**{"Idempotency-Key": "form-1"}))
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert len((await c.get("/v1/forms", headers=admin())).json()["items"]) == 2
    # another org cannot see or fix this form
    assert (await c.get(f"/v1/forms/{form['id']}", headers=admin("org-b"))).status_code == 404
    assert (await c.get(submit_url(form), headers=admin("org-b"))).status_code == 404


async def test_a_submission_left_received_is_finished_by_the_sweep(lead_app):
    import sqlalchemy as sa

    from lead_service.adapters.orm import submissions
    from lead_service.service_layer.reprocessing import sweep_once
    from salesflow_shared.events import utcnow

    c = lead_app.client
    form = await make_form(c)
    # what an unexpected processing error leaves behind: the raw row alone, "received", a while ago
    async with lead_app.context.uow() as uow:
        await uow.session.execute(sa.insert(submissions).values(
            id="stuck-1", org_id=form["org_id"], form_id=form["id"],
            received_at=utcnow() - __import__("datetime").timedelta(minutes=5), channel="signed",
            content_type="application/json", raw_body=json.dumps({"email": "late@stark.com"}), status="received",
            attempts=0))
        await uow.commit()
    assert await sweep_once(lead_app.context) >= 1
    got = (await c.get(f"{submit_url(form)}/stuck-1", headers=admin())).json()
    assert got["status"] == "accepted" and got["attempts"] == 1
    lead = (await c.get(f"/v1/leads/{got['lead_id']}", headers=admin())).json()
    assert lead["contact"]["email"] == "late@stark.com" and lead["form_id"] == form["id"]


async def test_erasure_scrubs_the_persons_raw_submissions_too(lead_app):
    c = lead_app.client
    form = await make_form(c, mapping={"mail": "contact.email"})
    # one browser post that failed mapping (never a lead) and one that made the lead
    r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "e_mail": "Zoe@Tyrell.com"})
    assert r.status_code == 202
    r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "mail": "zoe@tyrell.com"})
    lead_id = r.json()["lead_id"]
    assert (await c.post(f"/v1/leads/{lead_id}/erase", headers=admin())).status_code == 200
    stored = (await c.get(submit_url(form), headers=admin())).json()["items"]
    assert len(stored) == 2 and all(s["raw_body"] == "" for s in stored)


async def test_concurrent_submissions_of_one_person_make_one_lead(lead_app):
    import asyncio

    c = lead_app.client
    form = await make_form(c)
    bodies = [json.dumps({"email": "twin@cyberdyne.com", "job": f"title {i}"}).encode() for i in range(6)]
    results = await asyncio.gather(*(c.post(submit_url(form), content=b, headers=signed_headers(
        form["signing_secret"], b)) for b in bodies))
    assert sorted(r.status_code for r in results) == [200] * 5 + [201]
    assert len({r.json()["lead_id"] for r in results}) == 1
    assert len(await lead_app.outbox("LeadCreated")) == 1


async def test_a_burst_of_submissions_is_group_committed_with_the_same_results(lead_app):
    import asyncio

    c = lead_app.client
    form = await make_form(c)
    batcher = collaborators(lead_app.context).intake_batcher
    before = batcher.batched_submissions
    payloads = [{"email": f"burst{i}@massive.com", "name": f"Person {i}"} for i in range(16)]
    payloads += [{"email": "burst3@massive.com", "job": "CFO"}, {"name": "no email at all"}]
    bodies = [json.dumps(p).encode() for p in payloads]
    results = await asyncio.gather(*(c.post(submit_url(form), content=b, headers=signed_headers(
        form["signing_secret"], b)) for b in bodies))
    assert batcher.batched_submissions > before  # some of them were written together
    outcomes = [r.json().get("outcome") or r.json()["status"] for r in results]
    assert outcomes[:16] .count("created") + outcomes[:16].count("updated") == 16
    assert outcomes[16] in ("updated", "created") and outcomes[17] == "failed"
    assert len({r.json()["lead_id"] for r in results[:17]}) == 16  # burst3 twice: one lead
    assert results[17].json()["errors"][0]["field"] == "contact.email"
    assert len(await lead_app.outbox("LeadCreated")) == 16
    stored = (await c.get(submit_url(form), params={"limit": 100}, headers=admin())).json()["items"]
    assert len(stored) == 18 and {s["status"] for s in stored} == {"accepted", "failed"}
    lead = (await c.get(f"/v1/leads/{results[16].json()['lead_id']}", headers=admin())).json()
    assert lead["contact"]["title"] == "CFO" and lead["contact"]["first_name"] == "Person"
