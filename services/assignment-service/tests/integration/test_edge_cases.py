"""Capacity under concurrency, out-of-order events, orgs without rules, tenant isolation, the embedded mode."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from assignment_testkit import (
    ADMIN,
    ORG,
    add_reps,
    add_team,
    assignment_app,
    fallback,
    lead_created,
    owners,
    publish_rules,
)

from salesflow_shared.bus import PermanentFailure
from salesflow_shared.events import LeadSnapshot, LeadUpdatedV1, StageAdvancedV1, make_event
from salesflow_shared.testing import auth_headers


async def test_capacity_holds_when_two_replicas_decide_at_once(database_url):
    async with assignment_app(database_url) as (app_a, client), \
            assignment_app(database_url, migrate_on_start=False) as (app_b, _):
        await add_reps(client, ["a", "b"], capacity=5)
        team = await add_team(client, "T", ["a", "b"])
        await publish_rules(client, [fallback(team, strategy="least_loaded")])
        envelopes = [lead_created(f"l-{i}") for i in range(20)]
        await asyncio.gather(*(
            (app_a if i % 2 else app_b).state.context.dispatcher.dispatch(e) for i, e in enumerate(envelopes)))
        assigned = list((await owners(app_a)).values())
        assert assigned.count("a") == 5 and assigned.count("b") == 5 and assigned.count(None) == 10
        for rep_id in ("a", "b"):
            assert (await client.get(f"/v1/reps/{rep_id}", headers=ADMIN)).json()["open_leads"] == 5


async def test_update_before_create_routes_with_the_newest_snapshot(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["de", "other"])
        team = await add_team(client, "T", ["other"])
        await publish_rules(client, [
            {"name": "DE", "pipeline_id": "p-de", "conditions": [{"field": "country", "op": "eq", "value": "DE"}],
             "owner": {"strategy": "specific_rep", "rep_id": "de"}}, fallback(team)])
        update = make_event(LeadUpdatedV1(lead=LeadSnapshot(lead_id="l-1", country="DE"), changed=["country"]),
                            org_id=ORG, subject_id="l-1", subject_version=2, producer="lead-service")
        await app.state.context.dispatcher.dispatch(update)
        assert (await owners(app)) == {"l-1": None}  # known, not routed yet
        await app.state.context.dispatcher.dispatch(lead_created("l-1", country="FR", version=1))
        assert (await owners(app)) == {"l-1": "de"}


async def test_stage_event_for_an_unknown_lead_is_retried_and_no_rules_parks(database_url):
    async with assignment_app(database_url) as (app, client):
        early = make_event(StageAdvancedV1(lead_id="ghost", pipeline_id="p", to_stage_id="s", to_stage_name="S",
                                           to_stage_position=1, reason="entry", entered_at=datetime.now(UTC)),
                           org_id=ORG, subject_id="ghost", subject_version=1, producer="pipeline-service")
        with pytest.raises(Exception, match="not known yet"):
            await app.state.context.dispatcher.dispatch(early)
        with pytest.raises(PermanentFailure, match="no routing rules"):
            await app.state.context.dispatcher.dispatch(lead_created("l-x"))


async def test_another_org_sees_nothing(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["a"])
        team = await add_team(client, "T", ["a"])
        await publish_rules(client, [fallback(team)])
        await app.state.context.dispatcher.dispatch(lead_created("l-1"))
        other = auth_headers("org-b", "admin", "boss-b")
        assert (await client.get("/v1/assignments?lead_id=l-1", headers=other)).json()["items"] == []
        assert (await client.get("/v1/routing-rules", headers=other)).status_code == 404
        decision_id = (await client.get("/v1/assignments?lead_id=l-1", headers=ADMIN)).json()["items"][0]["id"]
        assert (await client.get(f"/v1/assignments/{decision_id}", headers=other)).status_code == 404
        assert (await client.post("/v1/assignments", headers=other,
                                  json={"lead_id": "l-1", "owner_id": "a"})).status_code == 404
        # a rule set may not name another org's team
        foreign = await client.put("/v1/routing-rules", headers={**other, "If-Match": '"0"'},
                                   json={"rules": [fallback(team)]})
        assert foreign.status_code == 422


async def test_embedded_mode_on_sqlite_routes_a_lead(tmp_path):
    async with assignment_app(f"sqlite+aiosqlite:///{tmp_path / 'assignment.db'}") as (app, client):
        await add_reps(client, ["a", "b"])
        team = await add_team(client, "T", ["a", "b"])
        await publish_rules(client, [fallback(team)])
        for i in range(3):
            await app.state.context.dispatcher.dispatch(lead_created(f"l-{i}"))
        assert await owners(app) == {"l-0": "a", "l-1": "b", "l-2": "a"}
        simulated = await client.post("/v1/routing/simulate", headers=ADMIN, json={"lead": {}})
        assert simulated.json()["owner_id"] == "b"


async def test_hand_off_to_a_team_with_nobody_available_keeps_the_current_owner(database_url):
    async with assignment_app(database_url) as (app, client):
        await add_reps(client, ["inside"])
        await add_reps(client, ["outside"], active=False)
        inside = await add_team(client, "Inside", ["inside"])
        outside = await add_team(client, "Outside", ["outside"])
        await publish_rules(client, [
            {"id": "handoff", "triggers": ["stage_entry"], "owner": {"strategy": "round_robin", "team_id": outside},
             "conditions": [{"field": "stage_name", "op": "eq", "value": "Presentation"}]},
            fallback(inside)])
        await app.state.context.dispatcher.dispatch(lead_created("l-1"))
        await app.state.context.dispatcher.dispatch(make_event(StageAdvancedV1(
            lead_id="l-1", pipeline_id="p", to_stage_id="s-2", to_stage_name="Presentation", to_stage_position=2,
            reason="goal_met", entered_at=datetime.now(UTC)),
            org_id=ORG, subject_id="l-1", subject_version=2, producer="pipeline-service"))
        assert (await owners(app)) == {"l-1": "inside"}
        last = (await client.get("/v1/assignments?lead_id=l-1", headers=ADMIN)).json()["items"][-1]
        assert last["trigger"] == "stage_entry" and last["skipped"] == [{"rep_id": "outside", "reason": "inactive"}]
        assert "stays with inside" in last["reason"]
