"""The routing dry run predicts what really happens: a partner lead is worth 50 points (lead-service's scoring
rules) and leads of 40 points or more go to the senior team (assignment-service's routing rules). Simulating
the raw lead says which intake fact it had to assume (the score); simulating the lead as lead-service's preview
returns it predicts the very rule, pipeline and team the real lead then gets. In both run modes."""
from __future__ import annotations

from e2e_testkit import (
    ASSIGNMENT,
    LEAD,
    PIPELINE,
    World,
    fallback_rule,
    inbound_pipeline,
    new_org,
    ok,
    poll,
    put_rules,
    setup_team,
)


async def test_the_simulation_runs_on_the_facts_a_real_lead_is_routed_on(any_world: World):
    world = any_world
    org = new_org("simulate")
    async with world.admin_clients(org, LEAD, PIPELINE, ASSIGNMENT) as (lead_api, pipeline_api, assignment_api):
        pipeline = await inbound_pipeline(pipeline_api)
        senior = await setup_team(assignment_api, org, ["sam"], "Senior")
        junior = await setup_team(assignment_api, org, ["jon"], "Junior")
        await put_rules(assignment_api, [
            {"id": "scored", "name": "Hot leads", "triggers": ["lead_created"],
             "conditions": [{"field": "score", "op": "gte", "value": 40}], "pipeline_id": pipeline["id"],
             "owner": {"strategy": "round_robin", "team_id": senior}},
            fallback_rule(pipeline["id"], junior, "rest", "Everyone else")])
        await ok(lead_api.post("/v1/scoring-rules", json={
            "name": "partner", "points": 50, "config": {"kind": "source_in", "sources": ["partner"]}}), 201)
        entry = {"contact": {"first_name": "Pia", "email": "pia@partner-co.com"}, "company": {"name": "Partner Co"},
                 "country": "FR", "source": "partner"}

        raw = await ok(assignment_api.post("/v1/routing/simulate", json={"lead": entry}))
        assert (raw["rule_id"], raw["owner_id"]) == ("rest", "jon")
        assert raw["assumed"] == [{"fact": "score", "assumed": None, "read_by_rules": ["scored"],
                                   "why": "lead-service scores every lead with the org's scoring rules before it "
                                          "is routed"}]

        preview = await ok(lead_api.post("/v1/leads/preview", json=entry))
        assert preview["lead"]["score"] == 50 and preview["snapshot"]["score"] == 50
        assert (await ok(lead_api.get("/v1/leads")))["items"] == []  # the preview stored nothing
        predicted = await ok(assignment_api.post("/v1/routing/simulate", json={"lead": preview["snapshot"]}))
        assert (predicted["rule_id"], predicted["owner_id"], predicted["assumed"]) == ("scored", "sam", [])

        lead = await ok(lead_api.post("/v1/leads", json=entry), 201)

        async def routed():
            decisions = (await ok(assignment_api.get("/v1/assignments", params={"lead_id": lead["id"]})))["items"]
            assert len(decisions) == 1, decisions
            return decisions[0]
        decision = await poll(routed, timeout=30)
        assert (decision["rule_id"], decision["owner_id"], decision["team_id"]) == (
            predicted["rule_id"], predicted["owner_id"], predicted["team_id"])
        assert lead["score"] == preview["lead"]["score"]
