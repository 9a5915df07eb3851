"""Idempotency-Key on lead-service's POSTs: scoped to the caller, custom fields, a retried disqualify."""
from __future__ import annotations

import pytest
from lead_testkit import a_lead, admin, rep

from salesflow_shared.testing import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_custom_fields_honour_the_idempotency_key(lead_app):
    c = lead_app.client
    field = {"key": "budget_owner", "label": "Budget owner", "type": "string"}
    first = await c.post("/v1/leads/custom-fields", json=field, headers=admin(**{"Idempotency-Key": "cf-1"}))
    assert first.status_code == 201, first.text
    replay = await c.post("/v1/leads/custom-fields", json=field, headers=admin(**{"Idempotency-Key": "cf-1"}))
    assert replay.status_code == 201 and replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other = {"key": "champion", "label": "Champion", "type": "boolean"}
    conflict = await c.post("/v1/leads/custom-fields", json=other, headers=admin(**{"Idempotency-Key": "cf-1"}))
    assert conflict.status_code == 409 and conflict.headers["content-type"].startswith("application/problem+json")
    listed = (await c.get("/v1/leads/custom-fields", headers=admin())).json()["items"]
    assert [f["key"] for f in listed] == ["budget_owner"]
    # without a key, defining it again is the usual conflict
    assert (await c.post("/v1/leads/custom-fields", json=field, headers=admin())).status_code == 409


async def test_a_retried_disqualify_with_the_same_if_match_gets_the_stored_response(lead_app):
    c = lead_app.client
    created = await c.post("/v1/leads", json=a_lead("retry@corp.example"), headers=admin())
    lead_id, etag = created.json()["id"], created.headers["etag"]
    headers = admin(**{"If-Match": etag, "Idempotency-Key": "dq-1"})
    first = await c.post(f"/v1/leads/{lead_id}/disqualify", json={"reason": "student"}, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "disqualified"
    retry = await c.post(f"/v1/leads/{lead_id}/disqualify", json={"reason": "student"}, headers=headers)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json() and retry.headers["etag"] == first.headers["etag"]
    assert len(await lead_app.outbox("LeadDisqualified")) == 1
    # the same stale If-Match without the key is still refused
    stale = await c.post(f"/v1/leads/{lead_id}/disqualify", json={"reason": "student"},
                         headers=admin(**{"If-Match": etag}))
    assert stale.status_code == 412


async def test_another_rep_sending_the_same_key_and_body_does_not_get_the_first_reps_response(lead_app):
    c = lead_app.client
    body = a_lead("rep-a-lead@corp.example")
    first = await c.post("/v1/leads", json=body, headers=rep(sub="rep-a", **{"Idempotency-Key": "k-7"}))
    assert first.status_code == 201
    second = await c.post("/v1/leads", json=a_lead("rep-b-lead@corp.example"),
                          headers=rep(sub="rep-b", **{"Idempotency-Key": "k-7"}))
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers
    again = await c.post("/v1/leads", json=body, headers=rep(sub="rep-a", **{"Idempotency-Key": "k-7"}))
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]


async def test_a_retried_secret_rotation_returns_the_secret_it_made_not_a_third_one(lead_app):
    c = lead_app.client
    form = (await c.post("/v1/forms", json={"name": "F", "mapping": {"email": "contact.email"}},
                         headers=admin())).json()
    url = f"/v1/forms/{form['id']}/rotate-secret"
    first = await c.post(url, headers=admin(**{"Idempotency-Key": "rot-1"}))
    retry = await c.post(url, headers=admin(**{"Idempotency-Key": "rot-1"}))
    assert first.status_code == retry.status_code == 200
    assert first.json()["signing_secret"] != form["signing_secret"]
    assert retry.json()["signing_secret"] == first.json()["signing_secret"]
    current = (await c.get(f"/v1/forms/{form['id']}", headers=admin())).json()
    assert current["signing_secret"] == first.json()["signing_secret"] and current["version"] == 2


async def test_a_retried_csv_upload_is_imported_once_and_another_file_with_its_key_is_refused(lead_app):
    c = lead_app.client
    csv_file = b"Email,First Name\nuno@buyer.example,Uno\ndos@buyer.example,Dos\n"
    headers = admin(**{"Content-Type": "text/csv", "Idempotency-Key": "import-1"})
    first = await c.post("/v1/imports", content=csv_file, params={"filename": "list.csv"}, headers=headers)
    assert first.status_code == 202, first.text
    retry = await c.post("/v1/imports", content=csv_file, params={"filename": "list.csv"}, headers=headers)
    assert retry.status_code == 202 and retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["location"] == f"/v1/imports/{first.json()['id']}"
    other_file = await c.post("/v1/imports", content=b"Email\ntres@buyer.example\n", params={"filename": "list.csv"},
                              headers=headers)
    assert other_file.status_code == 409 and other_file.headers["content-type"].startswith("application/problem+json")

    async def done() -> None:
        progress = (await c.get(f"/v1/imports/{first.json()['id']}", headers=admin())).json()
        assert progress["status"] == "done", progress
    await eventually(done, timeout=20)
    # one import, two leads: neither the retry nor the refused file left an import behind or created a lead
    assert [i["id"] for i in (await c.get("/v1/imports", headers=admin())).json()["items"]] == [first.json()["id"]]
    emails = sorted(lead["contact"]["email"] for lead in (await c.get("/v1/leads", headers=admin())).json()["items"])
    assert emails == ["dos@buyer.example", "uno@buyer.example"]
    assert len(await lead_app.outbox("LeadCreated")) == 2


async def test_a_retried_erasure_is_answered_from_the_first_and_announced_once(lead_app):
    c = lead_app.client
    lead = (await c.post("/v1/leads", json=a_lead("gone@corp.example"), headers=admin())).json()
    headers = admin(**{"Idempotency-Key": "erase-1"})
    first = await c.post(f"/v1/leads/{lead['id']}/erase", headers=headers)
    assert first.status_code == 200 and first.json() == {"erased_lead_ids": [lead["id"]]}
    retry = await c.post(f"/v1/leads/{lead['id']}/erase", headers=headers)
    assert retry.status_code == 200 and retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert len(await lead_app.outbox("LeadErased")) == 1


async def test_a_retried_rescore_returns_the_first_run_instead_of_running_again(lead_app):
    c = lead_app.client
    await c.post("/v1/leads", json=a_lead("score@corp.example"), headers=admin())
    await c.post("/v1/scoring-rules", json={"name": "eur deals", "points": 3, "config": {
        "kind": "value_band", "min": "1000", "currency": "EUR"}}, headers=admin())
    headers = admin(**{"Idempotency-Key": "rescore-1"})
    first = await c.post("/v1/scoring-rules/rescore", headers=headers)
    assert first.json() == {"rescored": 1, "changed": 1}
    # a second run would find nothing to change ({"changed": 0}); the retry gets the first run's answer
    retry = await c.post("/v1/scoring-rules/rescore", headers=headers)
    assert retry.json() == {"rescored": 1, "changed": 1} and retry.headers["idempotent-replayed"] == "true"
    assert len([e for e in await lead_app.outbox("LeadUpdated") if e["data"]["cause"] == "rescoring"]) == 1
    assert (await c.post("/v1/scoring-rules/rescore", headers=admin())).json() == {"rescored": 1, "changed": 0}
