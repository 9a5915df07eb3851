"""The public submission endpoint under hostile input (issue: security review): bodies nested too deep,
squatted submission ids, CORS per form."""
from __future__ import annotations

import json

import pytest

from lead_testkit import admin, signed_headers

pytestmark = pytest.mark.asyncio(loop_scope="module")

FORM = {"name": "Demo request", "mapping": {"email": "contact.email", "name": "contact.full_name"},
        "required": ["contact.email"]}


async def make_form(client, **changes):
    r = await client.post("/v1/forms", json={**FORM, **changes}, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


def submit_url(form):
    return f"/v1/forms/{form['id']}/submissions"


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
