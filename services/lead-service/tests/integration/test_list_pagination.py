"""Every list pages with `limit` and `cursor` (forms, imports, scoring rules, custom fields included); a cursor
the API did not issue is a 422 naming it."""
from __future__ import annotations

import pytest
from lead_testkit import admin

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def walk(client, path, limit=2):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=params, headers=admin("org-pages"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= limit
        seen += body["items"]
        pages += 1
        if (cursor := body["next_cursor"]) is None:
            return seen, pages


async def test_lists_page_with_limit_and_cursor_and_refuse_a_foreign_cursor(lead_app):
    c = lead_app.client
    for i in range(5):
        assert (await c.post("/v1/scoring-rules", headers=admin("org-pages"), json={
            "name": f"rule {i}", "points": i, "config": {"kind": "field_present", "field": "contact.phone"}})
                ).status_code == 201
        assert (await c.post("/v1/leads/custom-fields", headers=admin("org-pages"),
                             json={"key": f"field_{i}", "type": "string"})).status_code == 201
        assert (await c.post("/v1/forms", headers=admin("org-pages"), json={
            "name": f"form {i}", "mapping": {"email": "contact.email"}})).status_code == 201

    rules, pages = await walk(c, "/v1/scoring-rules")
    assert [r["name"] for r in rules] == [f"rule {i}" for i in range(5)] and pages == 3
    fields, pages = await walk(c, "/v1/leads/custom-fields")
    assert [f["key"] for f in fields] == [f"field_{i}" for i in range(5)] and pages == 3
    forms, pages = await walk(c, "/v1/forms", limit=4)
    assert [f["name"] for f in forms] == [f"form {i}" for i in range(5)] and pages == 2

    for path in ("/v1/scoring-rules", "/v1/leads/custom-fields", "/v1/forms", "/v1/imports"):
        refused = await c.get(path, params={"cursor": "garbage"}, headers=admin("org-pages"))
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "cursor", (path, refused.text)
