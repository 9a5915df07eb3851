"""One prospect, one open lead, in both run modes: parallel entries of one email without an Idempotency-Key
make one lead (full mode: PostgreSQL + RabbitMQ; embedded mode: SQLite + the in-process bus); and a rep
entering another rep's open lead gets 409 naming it and its owner, while the lead keeps its owner."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from lead_testkit import LeadApp, a_lead, start_lead_app

from lead_service.adapters.orm import leads
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import auth_headers


@pytest.fixture(params=["full", "embedded"])
async def any_mode_app(request, database_url, amqp_url, bus_namespace, tmp_path) -> AsyncIterator[LeadApp]:
    if request.param == "full":
        async with start_lead_app(database_url, amqp_url, bus_namespace) as app:
            yield app
    else:
        async with start_lead_app(f"sqlite+aiosqlite:///{tmp_path / 'lead-service.db'}", None, "") as app:
            yield app


ORG = "org-one-lead"


def admin() -> dict[str, str]:
    return auth_headers(ORG, "admin", "admin-1")


def rep(sub: str) -> dict[str, str]:
    return auth_headers(ORG, "rep", sub)


async def stored_leads(app: LeadApp, email: str) -> list[dict]:
    async with app.context.database.session() as session:
        rows = (await session.execute(sa.select(leads.c.id, leads.c.owner_id).where(
            leads.c.org_id == ORG, leads.c.email == email))).mappings().all()
    return [dict(r) for r in rows]


async def test_eight_parallel_entries_of_one_email_make_one_lead(any_mode_app: LeadApp):
    client = any_mode_app.client
    email = "octo@parallel-corp.com"
    results = await asyncio.gather(*(client.post("/v1/leads", headers=admin(), json=a_lead(
        email, value=f"{1000 + i}.00")) for i in range(8)))
    assert sorted(r.status_code for r in results) == [200] * 7 + [201], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert len(await stored_leads(any_mode_app, email)) == 1
    async with any_mode_app.context.database.session() as session:
        created = (await session.execute(sa.select(sa.func.count()).select_from(outbox_table).where(
            outbox_table.c.org_id == ORG, outbox_table.c.event_type == "LeadCreated"))).scalar_one()
    assert created == 1


async def test_a_reps_entry_of_another_reps_open_lead_is_refused_and_logged(any_mode_app: LeadApp):
    client = any_mode_app.client
    email = "prospect@taken-corp.com"
    mine = await client.post("/v1/leads", headers=rep("rep-a"), json=a_lead(email))
    assert mine.status_code == 201, mine.text
    lead_id = mine.json()["id"]

    again = await client.post("/v1/leads", headers={**rep("rep-b"), "Idempotency-Key": "b-1"},
                              json=a_lead(email, value="99999.00"))
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    problem = again.json()
    assert (problem["lead_id"], problem["owner_id"], problem["status"]) == (lead_id, "rep-a", 409)
    assert lead_id in problem["detail"] and "rep-a" in problem["detail"]
    retried = await client.post("/v1/leads", headers={**rep("rep-b"), "Idempotency-Key": "b-1"},
                                json=a_lead(email, value="99999.00"))
    assert (retried.status_code, retried.json()["lead_id"]) == (409, lead_id)

    # Nothing changed hands: A still reads it, B does not, the value is A's.
    assert (await client.get(f"/v1/leads/{lead_id}", headers=rep("rep-b"))).status_code == 404
    kept = await client.get(f"/v1/leads/{lead_id}", headers=rep("rep-a"))
    assert kept.status_code == 200 and (kept.json()["owner_id"], kept.json()["value"]) == ("rep-a", "1200.00")
    assert await stored_leads(any_mode_app, email) == [{"id": lead_id, "owner_id": "rep-a"}]
    # The refusal is on the lead's timeline, once (the retry was a replay).
    timeline = await client.get("/v1/activities", params={"lead_id": lead_id}, headers=admin())
    notes = [a for a in timeline.json()["items"] if a["subject"] == "duplicate entry refused"]
    assert len(notes) == 1 and notes[0]["rep_id"] == "rep-b" and "'rep-a'" in notes[0]["notes"]

    # The owner entering it again updates it; a manager merging someone's entry keeps the owner too.
    assert (await client.post("/v1/leads", headers=rep("rep-a"), json=a_lead(email, value="1500.00"))
            ).status_code == 200
    merged = await client.post("/v1/leads", headers=auth_headers(ORG, "manager", "boss"),
                               json=a_lead(email, value="1800.00", owner_id="rep-b"))
    assert merged.status_code == 200 and (merged.json()["owner_id"], merged.json()["value"]) == ("rep-a", "1800.00")


async def test_eight_parallel_retries_with_one_idempotency_key_make_one_lead(any_mode_app: LeadApp):
    client = any_mode_app.client
    email = "keyed@parallel-corp.com"
    headers = {**admin(), "Idempotency-Key": "intake-1"}
    results = await asyncio.gather(*(client.post("/v1/leads", headers=headers, json=a_lead(email))
                                     for _ in range(8)))
    statuses = sorted(r.status_code for r in results)
    # One request does the work; the others replay its response, or (still in progress) are told to retry.
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, [r.text for r in results]
    replayed = [r for r in results if r.status_code == 201 and r.headers.get("idempotent-replayed") == "true"]
    assert len(replayed) == statuses.count(201) - 1
    assert len({r.json()["id"] for r in results if r.status_code == 201}) == 1
    assert len(await stored_leads(any_mode_app, email)) == 1
