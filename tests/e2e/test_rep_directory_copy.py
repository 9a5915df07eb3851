"""notification-service's copy of the rep directory follows a rep removed and added again under the same id: the
re-created entry continues the removed one's versions, so the copy takes it (a fresh version 1 would be taken
for an event older than the removal and ignored, and the rep's mail would go to the old address)."""
from __future__ import annotations

import asyncio

from e2e_testkit import ASSIGNMENT, LEAD, NOTIFICATION, PIPELINE, World, admin, new_org, ok, poll, put_rules, smtp_to


async def test_a_rep_removed_and_added_again_is_mailed_at_the_new_address(any_world: World):
    world = any_world
    org = new_org("rep-back")
    old_address, new_address = f"ria@{org}.old.example", f"ria@{org}.new.example"
    async with world.client(PIPELINE, admin(org)) as pipeline_api, \
            world.client(ASSIGNMENT, admin(org)) as assignment_api, \
            world.client(LEAD, admin(org)) as lead_api:
        pipeline = await ok(pipeline_api.post("/v1/pipelines", json={"name": "Simple", "stages": [{"name": "Talk"}]}),
                            201)
        await ok(assignment_api.post("/v1/reps", json={"user_id": "ria", "name": "Ria Old", "email": old_address}),
                 201)
        await ok(assignment_api.delete("/v1/reps/ria"), 204)
        created_before = await world.handled(NOTIFICATION, "RepCreated", "ok")
        again = await ok(assignment_api.post("/v1/reps", json={"user_id": "ria", "name": "Ria New",
                                                                 "email": new_address}), 201)
        assert again["version"] == 3  # created (1), removed (published as 2), back (3)

        async def copied() -> None:  # notification-service has taken the new entry in
            assert await world.handled(NOTIFICATION, "RepCreated", "ok") > created_before
        await poll(copied, timeout=20)

        team = await ok(assignment_api.post("/v1/teams", json={"name": "Desk", "member_ids": ["ria"]}), 201)
        await put_rules(assignment_api, [{"id": "all", "name": "All", "fallback": True,
                                          "pipeline_id": pipeline["id"],
                                          "owner": {"strategy": "round_robin", "team_id": team["id"]}}])
        await ok(lead_api.post("/v1/leads", json={"contact": {"first_name": "Cy", "last_name": "Back",
                                                              "email": f"cy@{org}.buyer.example"}}), 201)

        async def told() -> None:
            assert [m["Subject"] for m in smtp_to(world.smtp, new_address)] == ["New lead assigned to you: Cy Back"]
        await poll(told, timeout=30)
        await asyncio.sleep(2)  # nothing more comes, and nothing ever went to the old address
        await told()
        assert smtp_to(world.smtp, old_address) == []
