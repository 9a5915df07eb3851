"""Templates are checked when saved: a part that does not compile or render with sample variables is a 422
naming that part; a template that breaks at send time is a recorded failure, not a crash."""
from __future__ import annotations

from notification_testkit import Harness

from salesflow_shared.testing import auth_headers

GOOD = {"name": "Hello", "subject": "Hi {{ lead.first_name }}", "html_body": "<p>{{ lead.company }}</p>",
        "text_body": "{{ lead.company }}"}


BROKEN = [
    ("html_body", "<p>{% if lead.first_name %}unclosed</p>", "syntax error"),
    ("subject", "Hi {{ lead.nickname }}", "nickname"),
    ("text_body", "{{ lead.first_name.__class__.__mro__ }}", "not allowed"),
    ("text_body", "{{ ''.__class__.__subclasses__() }}", "not allowed"),
]


async def test_a_template_that_does_not_render_is_a_422_naming_the_field(harness: Harness):
    for field, source, message in BROKEN:
        response = await harness.client.post("/v1/templates", json={**GOOD, field: source}, headers=harness.admin)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in problem["errors"]] == [field]
        assert message in problem["errors"][0]["message"]
    both = await harness.client.post("/v1/templates", json={**GOOD, "subject": "{{", "text_body": "{{ x }}"},
                                     headers=harness.admin)
    assert [e["field"] for e in both.json()["errors"]] == ["subject", "text_body"]
    assert (await harness.client.get("/v1/templates", headers=harness.admin)).json()["items"] == []


async def test_templates_are_versioned_and_scoped_to_the_org_sequences_validated(harness: Harness):
    created = await harness.client.post("/v1/templates", json=GOOD, headers=harness.admin)
    assert created.status_code == 201
    template = created.json()
    url = f"/v1/templates/{template['id']}"
    etag = created.headers["ETag"]
    assert (await harness.client.put(url, json=GOOD, headers=harness.admin)).status_code == 428
    updated = await harness.client.put(url, json={**GOOD, "subject": "Hello {{ lead.first_name }}"},
                                       headers={**harness.admin, "If-Match": etag})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    stale = await harness.client.put(url, json=GOOD, headers={**harness.admin, "If-Match": etag})
    assert stale.status_code == 412
    bad = await harness.client.put(url, json={**GOOD, "html_body": "{{ oops"},
                                   headers={**harness.admin, "If-Match": updated.headers["ETag"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "html_body"
    assert (await harness.client.get(url, headers=auth_headers("other-org"))).status_code == 404
    rep = await harness.client.post("/v1/templates", json=GOOD, headers=auth_headers(harness.org, "rep"))
    assert rep.status_code == 403

    # Idempotency-Key: the same request twice creates one template; another body under the key is refused
    keyed = {**harness.admin, "Idempotency-Key": "tpl-1"}
    first = await harness.client.post("/v1/templates", json={**GOOD, "name": "Keyed"}, headers=keyed)
    again = await harness.client.post("/v1/templates", json={**GOOD, "name": "Keyed"}, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201) and first.json()["id"] == again.json()["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await harness.client.post("/v1/templates", json={**GOOD, "name": "Other"}, headers=keyed)
    assert other.status_code == 409

    # text PostgreSQL cannot store is a 422 naming the field (a 404 for ids), never a 500
    nul = await harness.client.post("/v1/templates", json={**GOOD, "name": "bad\x00name"}, headers=harness.admin)
    assert nul.status_code == 422 and nul.json()["errors"][0]["field"] == "name"
    surrogate = await harness.client.post("/v1/milestones", content='{"name": "x\\ud800", "kind": "deal_won"}',
                                          headers={**harness.admin, "Content-Type": "application/json"})
    assert surrogate.status_code == 422 and surrogate.json()["errors"][0]["field"] == "name"
    assert (await harness.client.get("/v1/templates/a%00b", headers=harness.admin)).status_code == 404
    huge = await harness.client.post("/v1/milestones", json={"name": "x", "kind": "deal_won", "min_value": "1e30"},
                                     headers=harness.admin)
    assert huge.status_code == 422 and huge.json()["errors"][0]["field"] == "min_value"

    # sequences name the field too
    response = await harness.client.post("/v1/sequences", json={
        "name": "x", "trigger": "stage_entry", "steps": [{"template_id": "nope"}]}, headers=harness.admin)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"stage_id", "steps.0.template_id"}
