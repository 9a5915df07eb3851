"""Conventions every service shares, as assignment-service keeps them: strict booleans, strong ETags, times with
their offset."""
from __future__ import annotations

import pytest
from assignment_testkit import ADMIN, assignment_app, rep_body


@pytest.fixture
async def client(database_url):
    async with assignment_app(database_url) as (_, client):
        yield client


async def test_booleans_are_booleans_and_etags_are_strong(client):
    for number in (0, 1):
        refused = await client.post("/v1/reps", json=rep_body("u-num", active=number), headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "active", refused.text
    created = await client.post("/v1/reps", json=rep_body("u-bo", active=False), headers=ADMIN)
    assert created.status_code == 201 and created.json()["active"] is False
    assert created.headers["etag"] == '"1"'
    assert (await client.patch("/v1/reps/u-bo", json={"active": 1}, headers={**ADMIN, "If-Match": '"1"'})
            ).status_code == 422
    weak = await client.patch("/v1/reps/u-bo", json={"active": True}, headers={**ADMIN, "If-Match": 'W/"1"'})
    assert weak.status_code == 412
    assert created.json()["created_at"].endswith(("Z", "+00:00"))
