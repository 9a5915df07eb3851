"""The public submission endpoint under hostile input (issue: security review): bodies nested too deep,
squatted submission ids, CORS per form."""
from __future__ import annotations

import json

import pytest

from lead_testkit import admin, create_form, signed_headers, submit_url

pytestmark = pytest.mark.asyncio(loop_scope="module")

FORM = {"name": "Demo request", "mapping": {"email": "contact.email", "name": "contact.full_name"},
        "required": ["contact.email"]}


async def make_form(client, **changes):
    return await create_form(client, FORM, **changes)


async def test_deeply_nested_json_to_the_public_endpoint_is_a_422_naming_the_limit(lead_app):
    c = lead_app.client
    form = await make_form(c)
    for headers in ({"Content-Type": "application/json"},  # a browser-style post (no signature)
                    signed_headers(form["signing_secret"], b"[" * 20_000)):
        r = await c.post(submit_url(form), content=b"[" * 20_000, headers=headers)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "max_json_depth = 32" in r.json()["detail"]
    assert (await c.get(submit_url(form), headers=admin())).json()["items"] == []
    ok = json.dumps({"email": "deep@corp.com", "extra": [[["fine"]]]}).encode()
    r = await c.post(submit_url(form), content=ok, headers=signed_headers(form["signing_secret"], ok))
    assert r.status_code == 201, r.text


async def test_a_browser_post_cannot_squat_the_submission_id_of_the_signed_webhook(lead_app):
    c = lead_app.client
    form = await make_form(c)
    # A bot (the public key is in the page) fills the honeypot and sends the id the provider will use.
    r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "submission_id": "sub-42",
                                             "email": "bot@spam.example", "website": "http://spam"})
    assert r.status_code == 202 and r.json()["status"] == "received"
    # ... and a plain browser post (no honeypot) with the id of another later webhook.
    r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "submission_id": "sub-43",
                                             "email": "visitor@corp.example"})
    assert r.status_code == 201 and r.json()["outcome"] == "created"
    for key, email in (("sub-42", "grace@hopper.example"), ("sub-43", "ada@lovelace.example")):
        body = json.dumps({"email": email}).encode()
        r = await c.post(submit_url(form), content=body,
                         headers=signed_headers(form["signing_secret"], body, **{"Idempotency-Key": key}))
        assert r.status_code == 201, r.text
        assert r.json()["outcome"] == "created" and "idempotent-replayed" not in r.headers
        lead = (await c.get(f"/v1/leads/{r.json()['lead_id']}", headers=admin())).json()
        assert lead["contact"]["email"] == email
        # the provider's own retry is still a replay of its first delivery
        again = await c.post(submit_url(form), content=body,
                             headers=signed_headers(form["signing_secret"], body, **{"Idempotency-Key": key}))
        assert again.headers["idempotent-replayed"] == "true" and again.json()["lead_id"] == r.json()["lead_id"]
    emails = sorted(l["contact"]["email"] for l in (await c.get("/v1/leads", headers=admin())).json()["items"])
    assert emails == ["ada@lovelace.example", "grace@hopper.example", "visitor@corp.example"]
    stored = (await c.get(submit_url(form), headers=admin())).json()["items"]
    assert sorted((s["channel"], s["status"], s["dedup_key"]) for s in stored) == [
        ("browser", "accepted", "sub-43"), ("browser", "spam", None),
        ("signed", "accepted", "sub-42"), ("signed", "accepted", "sub-43")]
