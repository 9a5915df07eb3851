"""The won → account management hand-over across the running services: the account manager owns the customer
from then on, and the closer keeps read-only access to the deal it won (its lead, contact, pipeline position
and the decisions about it) in every service; a rep that never owned the lead sees none of it."""
from __future__ import annotations

import uuid

from e2e_testkit import (
    ASSIGNMENT,
    LEAD,
    PIPELINE,
    World,
    admin,
    new_org,
    ok,
    poll,
    put_rules,
    rep,
    rep_email,
    setup_inbound_org,
    submit_form,
)


async def test_the_closer_keeps_read_only_access_to_the_deal_it_won(world: World):
    org = new_org("handover")
    setup = await setup_inbound_org(world, org)
    async with world.client(ASSIGNMENT, admin(org)) as assignment_api:
        await ok(assignment_api.post("/v1/reps", json={"user_id": "am-1", "name": "Account Manager",
                                                       "email": rep_email(org, "am-1")}), 201)
        rules = (await ok(assignment_api.get("/v1/routing-rules")))["rules"]
        await put_rules(assignment_api, [{"id": "am", "name": "Won → account management", "triggers": ["lead_won"],
                                          "owner": {"strategy": "specific_rep", "rep_id": "am-1"}}, *rules])
    tag = uuid.uuid4().hex[:10]
    async with world.client(LEAD, admin(org)) as lead_api:
        accepted = await submit_form(lead_api, setup.form, {
            "email": f"{tag}@handover-{tag}.de", "first": "Hanna", "last": f"Over{tag}", "country": "AT",
            "company": f"Handover {tag}", "budget": "9000"})
        lead_id = accepted["lead_id"]

        async def owned_in_pipeline():
            lead = await ok(lead_api.get(f"/v1/leads/{lead_id}"))
            assert lead["owner_id"] in ("ann", "bob"), lead["owner_id"]
            async with world.client(PIPELINE, rep(org, lead["owner_id"])) as closer_pipeline:
                assert (await ok(closer_pipeline.get(f"/v1/positions/{lead_id}")))["status"] == "active"
            return lead
        lead = await poll(owned_in_pipeline, timeout=40, interval=0.5)
        closer = lead["owner_id"]
        async with world.client(PIPELINE, rep(org, closer)) as closer_pipeline:
            await ok(closer_pipeline.post(f"/v1/positions/{lead_id}/won", json={"value": "9000", "currency": "EUR"}))

        async def handed_over():
            assert (await ok(lead_api.get(f"/v1/leads/{lead_id}")))["owner_id"] == "am-1"
            async with world.client(PIPELINE, admin(org)) as pipeline_api:
                assert (await ok(pipeline_api.get(f"/v1/positions/{lead_id}")))["owner_id"] == "am-1"
        await poll(handed_over, timeout=40, interval=0.5)

    async with world.client(LEAD, rep(org, closer)) as closer_lead, \
            world.client(PIPELINE, rep(org, closer)) as closer_pipeline, \
            world.client(ASSIGNMENT, rep(org, closer)) as closer_assignment:
        read = await ok(closer_lead.get(f"/v1/leads/{lead_id}"))
        assert read["status"] == "won" and read["owner_id"] == "am-1"
        assert (await ok(closer_lead.get(f"/v1/contacts/{read['contact']['contact_id']}")))["last_name"] == f"Over{tag}"
        position = await ok(closer_pipeline.get(f"/v1/positions/{lead_id}"))
        assert position["status"] == "won" and position["outcome"]["won_value"] == "9000.00"
        decisions = (await ok(closer_assignment.get("/v1/assignments", params={"lead_id": lead_id})))["items"]
        assert [d["owner_id"] for d in decisions] == [closer, "am-1"]
        # read-only
        assert (await closer_lead.patch(f"/v1/leads/{lead_id}", json={"region": "Tyrol"},
                                        headers={"If-Match": "*"})).status_code == 403
    other = "bob" if closer == "ann" else "ann"
    async with world.client(LEAD, rep(org, other)) as other_lead, world.client(PIPELINE, rep(org, other)) as other_pipe:
        assert (await other_lead.get(f"/v1/leads/{lead_id}")).status_code == 404
        assert (await other_pipe.get(f"/v1/positions/{lead_id}")).status_code == 404
