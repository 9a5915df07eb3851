"""The public submission endpoint under hostile input (issue: security review): bodies nested too deep,
squatted submission ids, CORS per form."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from lead_testkit import admin, create_form, org_id, signed_headers, submit_url

from salesflow_shared.testing import auth_headers

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
    emails = sorted(lead["contact"]["email"] for lead in (await c.get("/v1/leads", headers=admin())).json()["items"])
    assert emails == ["ada@lovelace.example", "grace@hopper.example", "visitor@corp.example"]
    stored = (await c.get(submit_url(form), headers=admin())).json()["items"]
    assert sorted((s["channel"], s["status"], s["dedup_key"]) for s in stored) == [
        ("browser", "accepted", "sub-43"), ("browser", "spam", None),
        ("signed", "accepted", "sub-42"), ("signed", "accepted", "sub-43")]


async def test_each_form_answers_cors_for_its_own_origins_only(lead_app):
    c = lead_app.client
    page = "https://www.customer.example"
    form = await make_form(c, allowed_origins=["https://WWW.Customer.example:443/", "http://localhost:5173"])
    assert form["allowed_origins"] == [page, "http://localhost:5173"]
    preflight = {"Origin": page, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    r = await c.options(submit_url(form), headers=preflight)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == page and r.headers["vary"] == "Origin"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "Content-Type" in r.headers["access-control-allow-headers"]
    r = await c.options(submit_url(form), headers={**preflight, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    # the JSON post from the page: answered with the origin echoed (also when it is an error)
    body = {"sf_key": form["public_key"], "email": "page@customer.example"}
    r = await c.post(submit_url(form), json=body, headers={"Origin": page})
    assert r.status_code == 201 and r.headers["access-control-allow-origin"] == page
    r = await c.post(submit_url(form), json={**body, "sf_key": "pk_wrong"}, headers={"Origin": page})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == page
    # another site posting with the public key it read from the page is refused and stores nothing
    r = await c.post(submit_url(form), data={**body, "email": "x@evil.example"},
                     headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    stored = (await c.get(submit_url(form), headers=admin())).json()["items"]
    assert [s["status"] for s in stored] == ["accepted"]


async def test_a_form_without_allowed_origins_keeps_accepting_plain_posts_without_cors(lead_app):
    c = lead_app.client
    form = await make_form(c)
    assert form["allowed_origins"] == []
    r = await c.post(submit_url(form), data={"sf_key": form["public_key"], "email": "plain@corp.example"},
                     headers={"Origin": "https://anywhere.example"})
    assert r.status_code == 201 and "access-control-allow-origin" not in r.headers
    r = await c.options(submit_url(form), headers={"Origin": "https://anywhere.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403
    # the list is set by PATCH (If-Match) and validated: origins only
    r = await c.patch(f"/v1/forms/{form['id']}", headers=admin(**{"If-Match": '"1"'}),
                      json={"allowed_origins": ["https://ok.example", "https://x.example/path"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "allowed_origins.1"
    for bad in ("*", "null", "ftp://files.example", "https://*.example"):
        r = await c.patch(f"/v1/forms/{form['id']}", json={"allowed_origins": [bad]},
                          headers=admin(**{"If-Match": '"1"'}))
        assert r.status_code == 422, bad
    r = await c.patch(f"/v1/forms/{form['id']}", json={"allowed_origins": ["https://ok.example"]},
                      headers=admin(**{"If-Match": '"1"'}))
    assert r.status_code == 200 and r.json()["allowed_origins"] == ["https://ok.example"]
    r = await c.options(submit_url(form), headers={"Origin": "https://ok.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://ok.example"


async def test_admin_only_endpoints_answer_by_role_first_and_never_tell_whether_an_id_exists(lead_app):
    """README: other orgs' ids answer 404 like missing ids; a role that may not use an endpoint gets 403
    whatever the id (so the 403 says nothing about other orgs)."""
    c = lead_app.client
    r = await c.post("/v1/forms", json=FORM, headers=admin("org-b"))
    other_org_form = r.json()["id"]
    for role in ("manager", "rep"):
        headers = auth_headers(org_id("org-a"), role, f"{role}-1")
        answers = [await c.get(f"/v1/forms/{form_id}", headers=headers)
                   for form_id in (other_org_form, "no-such-form")]
        assert [a.status_code for a in answers] == [403, 403]
        assert answers[0].json()["detail"] == answers[1].json()["detail"]
    answers = [await c.get(f"/v1/forms/{form_id}", headers=admin("org-a")) for form_id in (other_org_form, "no-such")]
    assert [a.status_code for a in answers] == [404, 404]
    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()  # noqa: ASYNC240 - one small file
    assert "answers 403 whatever the id" in readme and "other orgs' ids answer 404" in readme
