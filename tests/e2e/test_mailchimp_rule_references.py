"""Mailchimp rules name real pipelines and stages, across the running services: notification-service knows the
org's pipelines from pipeline-service's PipelineDefined events, so a rule naming a pipeline or stage that does not
exist (or no longer does) is refused with 422 problem+json naming the field."""
from __future__ import annotations

from e2e_testkit import NOTIFICATION, PIPELINE, World, admin, mailchimp_rule, new_org, ok, poll


async def test_rules_naming_unknown_or_removed_pipelines_and_stages_are_refused(any_world: World):
    world = any_world
    org = new_org("rule-refs")
    async with world.client(PIPELINE, admin(org)) as pipeline_api, \
            world.client(NOTIFICATION, admin(org)) as notification_api:
        async def refused(rule: dict, field: str, words: str) -> None:
            response = await notification_api.post("/v1/mailchimp/rules", json=rule)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            [error] = response.json()["errors"]
            assert error["field"] == field and words in error["message"], error

        await refused({"pipeline_id": "no-such-pipeline", "stage_id": "x", "action": "subscribe", "list_id": "L"},
                      "pipeline_id", "no pipeline 'no-such-pipeline'")
        pipeline = await ok(pipeline_api.post("/v1/pipelines", json={
            "name": "Refs", "stages": [{"name": "One"}, {"name": "Two"}, {"name": "Three"}]}), 201)
        one, two, three = (s["id"] for s in pipeline["stages"])
        # No lead has entered the pipeline: its definition alone makes it known.
        created = await mailchimp_rule(notification_api, {"pipeline_id": pipeline["id"], "stage_id": one,
                                                          "action": "subscribe", "list_id": "L"})
        assert created["stage_id"] == one
        await refused({"pipeline_id": pipeline["id"], "stage_id": "no-such-stage", "action": "subscribe",
                       "list_id": "L"}, "stage_id", "no stage 'no-such-stage'")
        await refused({"stage_id": "no-such-stage", "action": "subscribe", "list_id": "L"}, "stage_id",
                      "in any pipeline of this org")

        # A stage deleted in pipeline-service is refused once the new definition has arrived.
        await ok(pipeline_api.delete(f"/v1/pipelines/{pipeline['id']}/stages/{three}"))

        async def stage_three_gone() -> None:
            await refused({"pipeline_id": pipeline["id"], "stage_id": three, "action": "subscribe", "list_id": "L"},
                          "stage_id", f"no stage '{three}'")
        await poll(stage_three_gone, timeout=20)
        await ok(notification_api.post("/v1/mailchimp/rules", json={
            "pipeline_id": pipeline["id"], "stage_id": two, "action": "subscribe", "list_id": "L"}), 201)

        # An archived pipeline takes no new rules.
        assert (await pipeline_api.delete(f"/v1/pipelines/{pipeline['id']}")).status_code == 204

        async def archived() -> None:
            await refused({"pipeline_id": pipeline["id"], "trigger": "lost", "action": "subscribe", "list_id": "L"},
                          "pipeline_id", "(or it is archived)")
        await poll(archived, timeout=20)
