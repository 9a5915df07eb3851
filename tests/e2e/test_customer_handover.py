"""The won hand-over across the running services, in both run modes: the closer wins the deal with notes
(pipeline-service), a lead_won routing rule gives the customer to the account manager (assignment-service), and
the account manager gets one customer hand-over message — the customer, the value, the closer and the deal's
notes — not a generic "new lead" email (notification-service)."""
from __future__ import annotations

from e2e_testkit import (
    ACCOUNT_MANAGER,
    ASSIGNMENT,
    LEAD,
    PIPELINE,
    World,
    fallback_rule,
    inbound_pipeline,
    new_org,
    ok,
    poll,
    position,
    put_rules,
    rep,
    rep_email,
    setup_team,
    smtp_to,
)


async def test_the_account_manager_gets_the_customer_hand_over(any_world: World):
    world = any_world
    org = new_org("handover")
    async with world.admin_clients(org, LEAD, PIPELINE, ASSIGNMENT) as (lead_api, pipeline_api, assignment_api):
        pipeline = await inbound_pipeline(pipeline_api)
        closers = await setup_team(assignment_api, org, ["cleo"], "Closers")
        await setup_team(assignment_api, org, [ACCOUNT_MANAGER], "Account management")
        await put_rules(assignment_api, [
            {"id": "account-management", "name": "Won customers go to account management",
             "triggers": ["lead_won"], "owner": {"strategy": "specific_rep", "rep_id": ACCOUNT_MANAGER}},
            fallback_rule(pipeline["id"], closers)])
        lead = await ok(lead_api.post("/v1/leads", json={
            "contact": {"first_name": "Hal", "last_name": "Hand", "email": "hal@customer-co.com", "title": "COO"},
            "company": {"name": "Customer Co"}, "country": "DE", "value": "9000", "currency": "EUR",
            "source": "api"}), 201)

        async def with_the_closer():  # assigned and routed: LeadAssigned and LeadRouted may arrive in either order
            found = await position(pipeline_api, lead["id"])
            assert (found["owner_id"], found["status"]) == ("cleo", "active"), found
        await poll(with_the_closer, timeout=30)
        async with world.client(PIPELINE, rep(org, "cleo")) as closer_api:
            await ok(closer_api.post(f"/v1/positions/{lead['id']}/won", json={
                "value": "9500.00", "currency": "EUR", "notes": "Kick-off on the 3rd; invoices to procurement."}))

        manager_address, closer_address = rep_email(org, ACCOUNT_MANAGER), rep_email(org, "cleo")

        async def handed_over():
            mails = smtp_to(world.smtp, manager_address)
            assert len(mails) == 1, [m["Subject"] for m in mails]
            return mails[0]
        mail = await poll(handed_over, timeout=30)
        assert mail["Subject"] == "Customer hand-over: Customer Co"
        text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert "Rep Cleo won Customer Co (9500.00 EUR); the customer is yours now." in text
        assert "Customer: Hal Hand, COO, Customer Co" in text and "Email: hal@customer-co.com" in text
        assert f"Closed by: Rep Cleo <{closer_address}>" in text
        assert "Deal notes:\nKick-off on the 3rd; invoices to procurement." in text
        assert [m["Subject"] for m in smtp_to(world.smtp, closer_address)] == [
            "New lead assigned to you: Hal Hand"]
