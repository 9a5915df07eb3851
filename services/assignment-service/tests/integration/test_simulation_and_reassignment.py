"""Simulation changes nothing; manual and bulk reassignment are recorded; updates re-route; erasure scrubs."""
from __future__ import annotations

import sqlalchemy as sa
from assignment_testkit import (
    ADMIN,
    MANAGER,
    ORG,
    add_reps,
    add_team,
    assignment_app,
    decisions,
    fallback,
    lead_created,
    lead_updated,
    leads,
    outbox_events,
    owners,
    publish_rules,
    rotations,
    table_count,
)

from salesflow_shared.events import LeadErasedV1, make_event
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import auth_headers


async def _state(app) -> tuple:
    async with app.state.context.database.session() as session:
        rotation = (await session.execute(sa.select(rotations.c.key, rotations.c.position))).all()
    return (rotation, await table_count(app, decisions), await table_count(app, outbox_table),
            await table_count(app, leads))


async def test_simulation_has_no_side_effects(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["a", "b", "c"])
        team = await add_team(client, "T", ["a", "b", "c"])
        await publish_rules(client, [
            {"id": "big", "name": "Big", "pipeline_id": "p-big",
             "conditions": [{"field": "value", "op": "between", "value": [50000, None]}],
             "owner": {"strategy": "specific_rep", "rep_id": "c"}},
            fallback(team)])
        await app.state.context.dispatcher.dispatch(lead_created("l-1"))  # takes slot 0 → a
        before = await _state(app)

        for _ in range(3):
            simulated = await client.post("/v1/routing/simulate", headers=MANAGER,
                                          json={"lead": {"country": "DE", "value": "1200"}})
            assert simulated.status_code == 200, simulated.text
            result = simulated.json()
            assert result["simulated"] is True and result["owner_id"] == "b"  # the next slot, every time
            assert result["rotation"]["position"] == 1
            assert result["evaluations"][0]["failed_condition"]["actual"] == "1200"
        big = (await client.post("/v1/routing/simulate", headers=MANAGER,
                                 json={"lead": {"value": 75000}})).json()
        assert big["rule_id"] == "big" and big["owner_id"] == "c" and big["pipeline_id"] == "p-big"

        draft = await client.post("/v1/routing/simulate", headers=MANAGER, json={
            "lead": {"source": "partner"},
            "rules": [{"name": "Partners", "pipeline_id": "p-partner", "owner": {"strategy": "specific_rep",
                                                                                  "rep_id": "c"},
                       "conditions": [{"field": "source", "op": "eq", "value": "partner"}]}, fallback(team)]})
        assert draft.json()["draft"] is True and draft.json()["pipeline_id"] == "p-partner"
        bad_draft = await client.post("/v1/routing/simulate", headers=MANAGER, json={
            "lead": {}, "rules": [{"name": "x", "pipeline_id": "p", "owner": {"strategy": "specific_rep",
                                                                             "rep_id": "c"}}]})
        assert bad_draft.status_code == 422 and "fallback" in bad_draft.text
        hand_off = await client.post("/v1/routing/simulate", headers=MANAGER, json={
            "lead": {}, "trigger": "stage_entry", "stage": {"stage_name": "Demo"}})
        assert hand_off.json()["rule_id"] is None and "no rule" in hand_off.json()["reason"]
        forbidden = await client.post("/v1/routing/simulate", json={"lead": {}},
                                      headers=auth_headers(ORG, "rep", "a"))
        assert forbidden.status_code == 403

        assert await _state(app) == before  # no rotation moved, no decision, no event, no lead
        await app.state.context.dispatcher.dispatch(lead_created("l-2"))
        assert (await owners(app))["l-2"] == "b"  # the slot the simulation showed was still free


async def test_manual_and_bulk_reassignment(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["leaver", "x", "y", "z"])
        await add_reps(client, ["off"], active=False)
        solo = await add_team(client, "Solo", ["leaver"])
        team = await add_team(client, "Takers", ["leaver", "x", "y", "z"])
        await publish_rules(client, [fallback(solo)])
        for i in range(7):
            await app.state.context.dispatcher.dispatch(lead_created(f"l-{i}"))
        assert set((await owners(app)).values()) == {"leaver"}

        manual = await client.post("/v1/assignments", headers={**MANAGER, "Idempotency-Key": "m-1"},
                                   json={"lead_id": "l-0", "owner_id": "x", "note": "customer asked"})
        assert manual.status_code == 201, manual.text
        assert manual.json()["trigger"] == "manual" and "customer asked" in manual.json()["reason"]
        replay = await client.post("/v1/assignments", headers={**MANAGER, "Idempotency-Key": "m-1"},
                                   json={"lead_id": "l-0", "owner_id": "x", "note": "customer asked"})
        assert replay.json()["id"] == manual.json()["id"]
        inactive = await client.post("/v1/assignments", headers=MANAGER, json={"lead_id": "l-1", "owner_id": "off"})
        assert inactive.status_code == 422 and "inactive" in inactive.json()["errors"][0]["message"]
        unknown = await client.post("/v1/assignments", headers=MANAGER, json={"lead_id": "nope", "owner_id": "x"})
        assert unknown.status_code == 404
        as_rep = await client.post("/v1/assignments", headers=auth_headers(ORG, "rep", "x"),
                                   json={"lead_id": "l-1", "owner_id": "x"})
        assert as_rep.status_code == 403

        bulk = await client.post("/v1/reps/leaver/reassign-open-leads", headers=MANAGER,
                                 json={"team_id": team, "strategy": "least_loaded"})
        assert bulk.status_code == 200, bulk.text
        assert bulk.json()["reassigned"] == 6
        now = await owners(app)
        assert "leaver" not in now.values()
        per_rep = {r: list(now.values()).count(r) for r in ("x", "y", "z")}
        assert sum(per_rep.values()) == 7 and max(per_rep.values()) - min(per_rep.values()) <= 1
        leaver = (await client.get("/v1/reps/leaver", headers=ADMIN)).json()
        assert leaver["active"] is False and leaver["open_leads"] == 0
        bulk_events = [e for e in await outbox_events(app, "LeadAssigned") if e["data"]["trigger"] == "bulk"]
        assert len(bulk_events) == 6 and all(e["data"]["previous_owner_id"] == "leaver" for e in bulk_events)
        history = (await client.get("/v1/assignments?lead_id=l-0", headers=ADMIN)).json()["items"]
        assert [d["trigger"] for d in history] == ["lead_created", "manual"]
        assert history[1]["decided_by"] == "manager-1"


async def test_lead_updated_reroutes_only_when_the_rule_says_so_and_a_routed_on_field_changed(database_url):
    async with assignment_app(database_url) as (app, client):
        dispatcher = app.state.context.dispatcher
        await add_reps(client, ["de-rep", "fr-rep", "rest"])
        rest = await add_team(client, "Rest", ["rest"])
        await publish_rules(client, [
            {"id": "de", "name": "Germany", "pipeline_id": "p-de", "reroute_on_update": True,
             "conditions": [{"field": "country", "op": "eq", "value": "DE"}],
             "owner": {"strategy": "specific_rep", "rep_id": "de-rep"}},
            {"id": "fr", "name": "France", "pipeline_id": "p-fr",
             "conditions": [{"field": "country", "op": "eq", "value": "FR"}],
             "owner": {"strategy": "specific_rep", "rep_id": "fr-rep"}},
            fallback(rest)])
        await dispatcher.dispatch(lead_created("l-de", country="DE"))
        await dispatcher.dispatch(lead_updated("l-de", 2, ["score"], country="DE", score=90))
        assert (await owners(app))["l-de"] == "de-rep"  # score is not routed on
        await dispatcher.dispatch(lead_updated("l-de", 3, ["country"], country="FR"))
        assert (await owners(app))["l-de"] == "fr-rep"
        routed = await outbox_events(app, "LeadRouted")
        assert [(e["data"]["pipeline_id"], e["data"]["trigger"]) for e in routed] == [
            ("p-de", "lead_created"), ("p-fr", "lead_updated")]
        await dispatcher.dispatch(lead_updated("l-de", 2, ["country"], country="DE"))  # stale: ignored
        # the France rule does not re-route, so moving the lead again changes nothing
        await dispatcher.dispatch(lead_updated("l-de", 4, ["country"], country="DE"))
        assert (await owners(app))["l-de"] == "fr-rep"
        # an assignment echo from lead-service never re-routes
        await dispatcher.dispatch(lead_created("l-2", country="DE"))
        await dispatcher.dispatch(lead_updated("l-2", 2, ["owner_id", "country"], cause="assignment", country="FR",
                                          owner_id="de-rep"))
        assert (await owners(app))["l-2"] == "de-rep"


async def test_lead_erased_scrubs_personal_values(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["a"])
        team = await add_team(client, "T", ["a"])
        await publish_rules(client, [
            {"name": "Postcode", "pipeline_id": "p", "conditions": [{"field": "postcode", "op": "eq", "value": "1"}],
             "owner": {"strategy": "specific_rep", "rep_id": "a"}}, fallback(team)])
        await app.state.context.dispatcher.dispatch(lead_created(
            "l-e", postcode="80331", contact={"email": "jane@example.com", "first_name": "Jane"}))
        erase = make_event(LeadErasedV1(lead_id="l-e"), org_id=ORG, subject_id="l-e", subject_version=2,
                           producer="lead-service")
        await app.state.context.dispatcher.dispatch(erase)
        decision = (await client.get("/v1/assignments?lead_id=l-e", headers=ADMIN)).json()["items"][0]
        assert decision["evaluations"][0]["failed_condition"]["actual"] == "[erased]"
        async with app.state.context.database.session() as session:
            snapshot = (await session.execute(sa.select(leads.c.snapshot))).scalar_one()
        assert "jane" not in str(snapshot).lower() and "80331" not in str(snapshot)
        assert "80331" not in str(decision)
