"""Scoring rules and custom fields over HTTP: validation names the field, scores keep their breakdown."""
from __future__ import annotations

import pytest
from lead_testkit import a_lead, admin, rep

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_rules_score_new_leads_with_a_breakdown_and_bad_rules_are_422(lead_app):
    c = lead_app.client
    good = [{"name": "decision maker", "points": 15, "config": {"kind": "title_keywords", "keywords": ["CTO"]}},
            {"name": "business email", "points": 10, "config": {"kind": "email_type", "email_type": "business"}},
            {"name": "DACH", "points": 5, "config": {"kind": "country_in", "countries": ["DE", "AT"]}}]
    for body in good:
        r = await c.post("/v1/scoring-rules", json=body, headers=admin())
        assert r.status_code == 201, r.text
    for body, field in [
        ({"name": "x", "points": 1, "config": {"kind": "title_keywords", "keywords": []}}, "config.keywords"),
        ({"name": "x", "points": 1, "config": {"kind": "telepathy"}}, "config.kind"),
        ({"name": "x", "points": 5000, "config": {"kind": "source_in", "sources": ["api"]}}, "points"),
        ({"name": "x", "points": 1, "config": {"kind": "value_band", "min": "-3"}}, "config.min"),
    ]:
        r = await c.post("/v1/scoring-rules", json=body, headers=admin())
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert (await c.post("/v1/scoring-rules", json=good[0], headers=rep())).status_code == 403

    lead = (await c.post("/v1/leads", json=a_lead(), headers=admin())).json()
    got = (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()
    assert got["score"] == 30
    assert {(b["name"], b["points"]) for b in got["score_breakdown"]} == {
        ("decision maker", 15), ("business email", 10), ("DACH", 5)}
    [created] = await lead_app.outbox("LeadCreated")
    assert created["data"]["lead"]["score"] == 30

    # an edit rescored: moving to France loses the DACH points
    r = await c.patch(f"/v1/leads/{lead['id']}", json={"country": "FR"}, headers=admin(**{"If-Match": '"1"'}))
    assert r.json()["score"] == 25
    # a new rule, then rescoring the open leads
    rule = (await c.post("/v1/scoring-rules", json={"name": "eur deals", "points": 3, "config": {
        "kind": "value_band", "min": "1000", "currency": "EUR"}}, headers=admin())).json()
    r = await c.post("/v1/scoring-rules/rescore", headers=admin())
    assert r.json() == {"rescored": 1, "changed": 1}
    assert (await c.get(f"/v1/leads/{lead['id']}", headers=admin())).json()["score"] == 28
    r = await c.patch(f"/v1/scoring-rules/{rule['id']}", json={"config": {"kind": "value_band"}},
                      headers=admin(**{"If-Match": f'"{rule["version"]}"'}))
    assert r.status_code == 422
    # other orgs neither see nor use these rules
    assert (await c.get("/v1/scoring-rules", headers=admin("org-b"))).json()["items"] == []
    theirs = (await c.post("/v1/leads", json=a_lead(), headers=admin("org-b"))).json()
    assert theirs["score"] == 0


async def test_custom_fields_are_typed(lead_app):
    c = lead_app.client
    r = await c.post("/v1/leads/custom-fields", json={"key": "seats", "type": "number"}, headers=admin())
    assert r.status_code == 201
    assert (await c.post("/v1/leads/custom-fields", json={"key": "seats", "type": "number"},
                         headers=admin())).status_code == 409
    assert (await c.post("/v1/leads/custom-fields", json={"key": "tier", "type": "choice"},
                         headers=admin())).status_code == 422
    ok = await c.post("/v1/leads", json=a_lead(custom_fields={"seats": "40"}), headers=admin())
    assert ok.status_code == 201 and ok.json()["custom_fields"] == {"seats": 40}
    bad = await c.post("/v1/leads", json=a_lead("x@y.io", custom_fields={"seats": "lots", "colour": "red"}),
                       headers=admin())
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"custom_fields.seats", "custom_fields.colour"}
    listed = (await c.get("/v1/leads/custom-fields", headers=admin())).json()["items"]
    assert [f["key"] for f in listed] == ["seats"]
