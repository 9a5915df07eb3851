"""The rep directory over HTTP: validation names the field, ETags guard changes, orgs never see each other."""
from __future__ import annotations

import pytest
from assignment_testkit import ADMIN, add_reps, add_team, assignment_app, outbox_events, rep_body

from salesflow_shared.testing import auth_headers


@pytest.fixture
async def client(database_url):
    async with assignment_app(database_url) as (_, client):
        yield client


def fields(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return {e["field"]: e["message"] for e in response.json()["errors"]}


async def test_rep_round_trip_with_every_attribute(client):
    body = rep_body("u-ann", tier=1, product_lines=["crm", "erp"], languages=["de", "en"], capacity=25,
                    timezone="Europe/Berlin",
                    working_hours=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}],
                    out_of_office=[{"start": "2030-01-01T00:00:00Z", "end": "2030-01-08T00:00:00Z",
                                    "note": "holiday"}])
    created = await client.post("/v1/reps", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    rep = created.json()
    assert rep["id"] == rep["user_id"] == "u-ann"
    assert rep["capacity"] == 25 and rep["tier"] == 1 and rep["timezone"] == "Europe/Berlin"
    assert rep["working_hours"][0]["start"] == "09:00" and rep["open_leads"] == 0
    fetched = await client.get("/v1/reps/u-ann", headers=ADMIN)
    assert fetched.json()["out_of_office"][0]["note"] == "holiday"
    assert fetched.headers["etag"] == '"1"'

    unconditional = await client.patch("/v1/reps/u-ann", json={"active": False}, headers=ADMIN)
    assert unconditional.status_code == 428  # a change needs the ETag read, so no edit is lost
    assert unconditional.headers["content-type"].startswith("application/problem+json")
    patched = await client.patch("/v1/reps/u-ann", json={"active": False, "capacity": None},
                                 headers={**ADMIN, "If-Match": '"1"'})
    assert patched.status_code == 200, patched.text
    assert patched.json()["active"] is False and patched.json()["capacity"] is None
    stale = await client.patch("/v1/reps/u-ann", json={"tier": 2}, headers={**ADMIN, "If-Match": '"1"'})
    assert stale.status_code == 412
    listed = await client.get("/v1/reps?active=false", headers=ADMIN)
    assert [r["id"] for r in listed.json()["items"]] == ["u-ann"]


async def test_rep_validation_names_each_field(client):
    bad = await client.post("/v1/reps", json=rep_body(
        "u-x", email="not-an-email", timezone="Mars/Olympus", tier=0, capacity=-1,
        working_hours=[{"days": ["mon"], "start": "09:00", "end": "09:00"}],
        out_of_office=[{"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}]), headers=ADMIN)
    errors = fields(bad)
    assert "email" in errors and "timezone" in errors and "tier" in errors and "capacity" in errors
    assert "must differ" in errors["working_hours.0"]
    assert "end must be after start" in errors["out_of_office.0"]
    unknown_day = await client.post("/v1/reps", json=rep_body(
        "u-y", working_hours=[{"days": ["funday"], "start": "09:00", "end": "17:00"}]), headers=ADMIN)
    assert "working_hours.0.days.0" in fields(unknown_day)
    await add_reps(client, ["u-dup"])
    dup = await client.post("/v1/reps", json=rep_body("u-dup"), headers=ADMIN)
    assert dup.status_code == 409


async def test_only_admins_write_and_other_orgs_get_404(client):
    as_rep = await client.post("/v1/reps", json=rep_body("u-r"), headers=auth_headers("org-a", "rep", "u-r"))
    assert as_rep.status_code == 403
    await add_reps(client, ["u-a"])
    team_id = await add_team(client, "Inside", ["u-a"])
    other = auth_headers("org-b", "admin", "admin-b")
    assert (await client.get("/v1/reps/u-a", headers=other)).status_code == 404
    assert (await client.get(f"/v1/teams/{team_id}", headers=other)).status_code == 404
    assert (await client.get("/v1/reps", headers=other)).json()["items"] == []


async def test_team_members_must_exist_and_not_repeat(client):
    await add_reps(client, ["u-1", "u-2"])
    missing = await client.post("/v1/teams", json={"name": "T", "member_ids": ["u-1", "ghost"]}, headers=ADMIN)
    assert "no rep 'ghost'" in fields(missing)["member_ids[1]"]
    repeated = await client.post("/v1/teams", json={"name": "T", "member_ids": ["u-1", "u-1"]}, headers=ADMIN)
    assert "member_ids" in fields(repeated)
    bad_lead = await client.post("/v1/teams", json={"name": "T", "member_ids": ["u-1"], "lead_rep_id": "nobody"},
                                 headers=ADMIN)
    assert "lead_rep_id" in fields(bad_lead)
    team_id = await add_team(client, "Inside", ["u-1"])
    changed = await client.patch(f"/v1/teams/{team_id}", json={"member_ids": ["u-2", "u-1"], "lead_rep_id": "u-2"},
                                 headers={**ADMIN, "If-Match": '"1"'})
    assert changed.json()["member_ids"] == ["u-2", "u-1"] and changed.json()["version"] == 2


async def test_territory_validation_and_pagination(client):
    await add_reps(client, ["u-1"])
    no_area = await client.post("/v1/territories", json={"name": "Nowhere"}, headers=ADMIN)
    assert fields(no_area)
    bad = await client.post("/v1/territories", json={
        "name": "DACH", "countries": ["de", "Germany"],
        "postcode_ranges": [{"from": "99999", "to": "10000"}], "rep_ids": ["ghost"]}, headers=ADMIN)
    errors = fields(bad)
    assert "countries.1" in errors and "postcode_ranges.0" in errors
    for i in range(3):
        ok = await client.post("/v1/territories", json={
            "name": f"T{i}", "countries": ["de"], "regions": ["Bayern"],
            "postcode_ranges": [{"from": "80000", "to": "87999", "country": "de"}], "rep_ids": ["u-1"]},
            headers=ADMIN)
        assert ok.status_code == 201, ok.text
        assert ok.json()["countries"] == ["DE"] and ok.json()["postcode_ranges"][0]["country"] == "DE"
    first = (await client.get("/v1/territories?limit=2", headers=ADMIN)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (await client.get(f"/v1/territories?limit=2&cursor={first['next_cursor']}", headers=ADMIN)).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    territory_id = second["items"][0]["id"]
    emptied = await client.patch(f"/v1/territories/{territory_id}", headers={**ADMIN, "If-Match": '"1"'},
                                 json={"countries": [], "regions": [], "postcode_ranges": []})
    assert "countries" in fields(emptied)
    moved = await client.patch(f"/v1/territories/{territory_id}", headers={**ADMIN, "If-Match": '"1"'},
                               json={"regions": ["Hessen"], "postcode_ranges": [{"from": "60000", "to": "65999"}]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["regions"] == ["Hessen"] and moved.json()["postcode_ranges"][0]["from"] == "60000"
    assert moved.headers["etag"] == '"2"'
    assert (await client.patch(f"/v1/territories/{territory_id}", headers={**ADMIN, "If-Match": '"1"'},
                               json={"name": "Late"})).status_code == 412


async def test_idempotent_rep_creation(client):
    headers = {**ADMIN, "Idempotency-Key": "k-1"}
    first = await client.post("/v1/reps", json=rep_body("u-i"), headers=headers)
    again = await client.post("/v1/reps", json=rep_body("u-i"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    other_body = await client.post("/v1/reps", json=rep_body("u-j"), headers=headers)
    assert other_body.status_code == 409


async def test_every_change_of_a_reps_entry_is_published_with_its_version(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["u-ev", "u-other"], timezone="Europe/Berlin", languages=["de"],
                       working_hours=[{"days": ["mon"], "start": "09:00", "end": "17:00"}])
        team_id = await add_team(client, "Inside", ["u-ev"])
        patched = await client.patch("/v1/reps/u-ev", json={"email": "ev@new.example"},
                                     headers={**ADMIN, "If-Match": '"2"'})  # joining the team was version 2
        assert patched.status_code == 200, patched.text
        assert (await client.patch("/v1/reps/u-ev", json={"active": False},
                                   headers={**ADMIN, "If-Match": '"3"'})).status_code == 200
        moved = await client.patch(f"/v1/teams/{team_id}", json={"member_ids": ["u-other"]},
                                   headers={**ADMIN, "If-Match": '"1"'})
        assert moved.status_code == 200, moved.text
        assert (await client.delete(f"/v1/teams/{team_id}", headers=ADMIN)).status_code == 204
        assert (await client.delete("/v1/reps/u-ev", headers=ADMIN)).status_code == 204

        events = [e for e in await outbox_events(app) if e["type"].startswith("Rep")]
        of_ev = [(e["type"], e["subject_version"], e["data"]["rep"]["email"], e["data"]["rep"]["active"],
                  e["data"]["rep"]["team_ids"], e["data"].get("changed")) for e in events if e["subject_id"] == "u-ev"]
        assert of_ev == [
            ("RepCreated", 1, "u-ev@example.com", True, [], None),
            ("RepUpdated", 2, "u-ev@example.com", True, [team_id], ["team_ids"]),
            ("RepUpdated", 3, "ev@new.example", True, [team_id], ["email"]),
            ("RepDeactivated", 4, "ev@new.example", False, [team_id], None),
            ("RepUpdated", 5, "ev@new.example", False, [], ["team_ids"]),
            ("RepDeactivated", 6, "ev@new.example", False, [], None),
        ]
        created = events[0]["data"]["rep"]
        assert (created["name"], created["timezone"], created["language"], created["working_hours"]) == (
            "Rep u-ev", "Europe/Berlin", "de", {"windows": [{"days": ["mon"], "start": "09:00", "end": "17:00"}]})
        of_other = [(e["type"], e["subject_version"], e["data"]["rep"]["team_ids"]) for e in events
                    if e["subject_id"] == "u-other"]
        assert of_other == [("RepCreated", 1, []), ("RepUpdated", 2, [team_id]), ("RepUpdated", 3, [])]
