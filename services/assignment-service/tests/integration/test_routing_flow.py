"""LeadCreated → LeadRouted + LeadAssigned over RabbitMQ, explained decisions, redelivery, hand-offs."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from assignment_testkit import (
    ADMIN,
    ORG,
    Broker,
    add_reps,
    add_team,
    assignment_app,
    decisions,
    fallback,
    lead_created,
    owners,
    publish_rules,
    table_count,
)

from salesflow_shared.events import LeadWonV1, StageAdvancedV1, make_event
from salesflow_shared.testing import auth_headers, eventually


async def test_lead_created_is_routed_and_assigned_with_reasons(database_url, amqp_url, bus_namespace):
    async with assignment_app(database_url, amqp_url, bus_namespace) as (app, client), \
            Broker(amqp_url, bus_namespace) as broker:
        await add_reps(client, ["ann", "bob"], timezone="Europe/Berlin")
        await add_reps(client, ["cid"], active=False)
        team = await add_team(client, "DACH inside", ["ann", "cid", "bob"])
        other = await add_team(client, "Rest", ["bob"])
        territory = (await client.post("/v1/territories", headers=ADMIN, json={
            "name": "DACH", "countries": ["DE", "AT", "CH"]})).json()["id"]
        rules = await publish_rules(client, [
            {"id": "enterprise", "name": "Enterprise", "pipeline_id": "p-ent",
             "conditions": [{"field": "value", "op": "gte", "value": 100000}],
             "owner": {"strategy": "specific_rep", "rep_id": "ann"}},
            {"id": "dach", "name": "DACH", "pipeline_id": "p-dach",
             "conditions": [{"field": "territory", "op": "eq", "value": territory}],
             "owner": {"strategy": "round_robin", "team_id": team}},
            fallback(other),
        ])
        envelope = lead_created("lead-1", country="de", value="5000", product_line="crm")
        await broker.publish(envelope)

        async def both_published():
            assert broker.of_type("LeadRouted", "lead-1") and broker.of_type("LeadAssigned", "lead-1")
        await eventually(both_published, timeout=30)
        routed = broker.of_type("LeadRouted", "lead-1")[0]
        assigned = broker.of_type("LeadAssigned", "lead-1")[0]
        assert routed["producer"] == "assignment-service" and routed["org_id"] == ORG
        assert routed["data"]["pipeline_id"] == "p-dach" and routed["data"]["territory_id"] == territory
        assert routed["data"]["rule_set_version"] == rules["version"] and "DACH" in routed["data"]["reason"]
        data = assigned["data"]
        assert data["owner_id"] == "ann" and data["owner_name"] == "Rep ann"
        assert data["owner_email"] == "ann@example.com" and data["owner_timezone"] == "Europe/Berlin"
        assert data["team_id"] == team and data["trigger"] == "lead_created" and data["strategy"] == "round_robin"
        assert data["candidates"] == ["ann", "cid", "bob"] and "round robin" in data["reason"]
        assert assigned["subject_version"] > routed["subject_version"]

        history = (await client.get("/v1/assignments?lead_id=lead-1", headers=ADMIN)).json()["items"]
        assert len(history) == 1
        decision = history[0]
        assert decision["id"] == data["decision_id"] and decision["rule_id"] == "dach"
        assert decision["rule_set_version"] == rules["version"]
        assert decision["evaluations"][0]["failed_condition"] == {
            "field": "value", "op": "gte", "value": 100000, "actual": "5000"}
        assert decision["evaluations"][1]["matched"] is True and len(decision["evaluations"]) == 2
        assert decision["territory"] == {"id": territory, "name": "DACH"}
        assert decision["rotation"]["position"] == 0 and decision["rotation"]["slot"] == 0

        # the next lead skips the inactive rep and says so
        await broker.publish(lead_created("lead-2", country="AT"))

        async def second():
            assert broker.of_type("LeadAssigned", "lead-2")
        await eventually(second, timeout=30)
        assert broker.of_type("LeadAssigned", "lead-2")[0]["data"]["owner_id"] == "bob"
        second_decision = (await client.get("/v1/assignments?lead_id=lead-2", headers=ADMIN)).json()["items"][0]
        assert second_decision["skipped"] == [{"rep_id": "cid", "reason": "inactive"}]

        # a redelivered LeadCreated (same event) and a second LeadCreated for the same lead assign nothing more
        await broker.publish(envelope)
        await broker.publish(lead_created("lead-1", country="FR"))
        await broker.publish(lead_created("lead-3"))

        handled = app.state.context.metrics.messages_handled

        async def third():
            assert broker.of_type("LeadAssigned", "lead-3")
            # every delivery went through: 4 handled, the redelivery recognised as a duplicate by the inbox
            assert handled.labels("LeadCreated", "ok")._value.get() == 4
            assert handled.labels("LeadCreated", "duplicate")._value.get() == 1
        await eventually(third, timeout=30)
        assert broker.of_type("LeadAssigned", "lead-3")[0]["data"]["owner_id"] == "bob"  # fallback team
        assert len(broker.of_type("LeadAssigned", "lead-1")) == 1
        assert len((await client.get("/v1/assignments?lead_id=lead-1", headers=ADMIN)).json()["items"]) == 1
        assert await table_count(app, decisions) == 3

        # open-lead counts come from the events
        ann = (await client.get("/v1/reps/ann", headers=ADMIN)).json()
        assert ann["open_leads"] == 1
        # a rep sees decisions about its own leads only
        assert (await client.get("/v1/assignments?lead_id=lead-1",
                                 headers=auth_headers(ORG, "rep", "bob"))).status_code == 404
        mine = await client.get("/v1/assignments", headers=auth_headers(ORG, "rep", "bob"))
        assert sorted(d["lead_id"] for d in mine.json()["items"]) == ["lead-2", "lead-3"]


def stage_event(lead_id: str, stage_name: str, version: int):
    return make_event(StageAdvancedV1(
        lead_id=lead_id, pipeline_id="p-1", to_stage_id=f"s-{stage_name.lower()}", to_stage_name=stage_name,
        to_stage_position=version, reason="goal_met", entered_at=datetime.now(UTC)),
        org_id=ORG, subject_id=lead_id, subject_version=version, producer="pipeline-service")


async def test_stage_hand_off_and_account_manager_on_won(database_url):
    async with assignment_app(database_url) as (app, client):
        dispatcher = app.state.context.dispatcher
        await add_reps(client, ["inside-1", "outside-1", "outside-2", "am-1"])
        inside = await add_team(client, "Inside", ["inside-1"])
        outside = await add_team(client, "Outside", ["outside-1", "outside-2"])
        await publish_rules(client, [
            {"id": "handoff", "name": "Inside → outside at presentation", "triggers": ["stage_entry"],
             "conditions": [{"field": "stage_name", "op": "eq", "value": "Presentation"}],
             "owner": {"strategy": "least_loaded", "team_id": outside}},
            {"id": "am", "name": "Account manager", "triggers": ["lead_won"],
             "owner": {"strategy": "specific_rep", "rep_id": "am-1"}},
            fallback(inside),
        ])
        await dispatcher.dispatch(lead_created("lead-h"))
        assert (await owners(app))["lead-h"] == "inside-1"

        await dispatcher.dispatch(stage_event("lead-h", "Qualified", 2))
        assert (await owners(app))["lead-h"] == "inside-1"  # no rule for this stage
        await dispatcher.dispatch(stage_event("lead-h", "Presentation", 3))
        assert (await owners(app))["lead-h"] == "outside-1"
        stale = stage_event("lead-h", "Presentation", 1)  # out of order: ignored
        await dispatcher.dispatch(stale)

        won = make_event(LeadWonV1(lead_id="lead-h", pipeline_id="p-1", value="1000", currency="EUR",
                                   won_at=datetime.now(UTC)),
                         org_id=ORG, subject_id="lead-h", subject_version=4, producer="pipeline-service")
        await dispatcher.dispatch(won)
        assert (await owners(app))["lead-h"] == "am-1"

        history = (await client.get("/v1/assignments?lead_id=lead-h", headers=ADMIN)).json()["items"]
        assert [(d["trigger"], d["owner_id"], d["previous_owner_id"]) for d in history] == [
            ("lead_created", "inside-1", None), ("stage_entry", "outside-1", "inside-1"),
            ("lead_won", "am-1", "outside-1")]
        assert history[1]["rule_id"] == "handoff" and "fewest open leads" in history[1]["reason"]
        from assignment_testkit import outbox_events
        assigned = await outbox_events(app, "LeadAssigned")
        assert [e["data"]["trigger"] for e in assigned] == ["lead_created", "stage_entry", "lead_won"]
        assert assigned[1]["data"]["previous_owner_id"] == "inside-1"
        assert [e["subject_version"] for e in await outbox_events(app) if e["subject_id"] == "lead-h"] == [1, 2, 3, 4]
        # won leads are not open: the account manager's open count stays 0
        assert (await client.get("/v1/reps/am-1", headers=ADMIN)).json()["open_leads"] == 0
        # the closer (and every earlier owner) still reads the lead's decisions; a rep that never owned it not
        for earlier in ("inside-1", "outside-1", "am-1"):
            seen = await client.get("/v1/assignments?lead_id=lead-h", headers=auth_headers(ORG, "rep", earlier))
            assert [d["owner_id"] for d in seen.json()["items"]] == ["inside-1", "outside-1", "am-1"], earlier
        stranger = await client.get("/v1/assignments?lead_id=lead-h", headers=auth_headers(ORG, "rep", "outside-2"))
        assert stranger.status_code == 404


async def test_unavailable_reps_are_never_chosen_and_the_decision_says_why(database_url):
    async with assignment_app(database_url) as (app, client):
        now = datetime.now(UTC)
        await add_reps(client, ["busy"], capacity=1)
        await add_reps(client, ["away"], out_of_office=[{"start": (now - timedelta(days=1)).isoformat(),
                                                          "end": (now + timedelta(days=1)).isoformat()}])
        await add_reps(client, ["gone"], active=False)
        team = await add_team(client, "T", ["busy", "away", "gone"])
        await publish_rules(client, [fallback(team)])
        await app.state.context.dispatcher.dispatch(lead_created("l-1"))
        await app.state.context.dispatcher.dispatch(lead_created("l-2"))
        assert (await owners(app)) == {"l-1": "busy", "l-2": None}
        decision = (await client.get("/v1/assignments?lead_id=l-2", headers=ADMIN)).json()["items"][0]
        assert {s["rep_id"]: s["reason"] for s in decision["skipped"]} == {
            "busy": "at_capacity", "away": "out_of_office", "gone": "inactive"}
        assert decision["owner_id"] is None and decision["team_id"] == team
        assert "no available rep" in decision["reason"]
