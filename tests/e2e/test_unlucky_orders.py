"""The unlucky event orders, forced through the running system in both run modes.

notification-service learns of reps and leads from other services' events, and nothing orders events from
different producers. Here a test-only event hold (World.events_held_back) keeps chosen events from
notification-service until the events that depend on them have been tried and found waiting:

- a task's reminder (TaskCreated) before the rep's directory entry (RepCreated, and LeadAssigned, which carries
  the owner's address too): the reminder waits, then is sent exactly once, never recorded as failed or parked;
- the "new lead assigned to you" email (LeadAssigned) before the lead's details (LeadCreated, LeadUpdated): it
  waits, then names the lead, exactly once, and the welcome email and the Mailchimp calls are not doubled.

Each journey counts every email and Mailchimp call of its org exactly."""
from __future__ import annotations

import asyncio
import hashlib

from e2e_testkit import (
    ASSIGNMENT,
    DACH_REPS,
    LEAD,
    NOTIFICATION,
    OTHER_REPS,
    PIPELINE,
    World,
    admin,
    fallback_rule,
    manager,
    new_org,
    ok,
    poll,
    position,
    put_rules,
    rep_email,
    setup_inbound_org,
    setup_team,
    smtp_to,
    submit_form,
)


async def notification_tried_and_waited(world: World, event_type: str, errors_before: float) -> None:
    """Until notification-service has handled an `event_type` and found what it needs missing (NotKnownYet is an
    error the bus retries): proof that the unlucky order really happened."""
    async def tried() -> None:
        assert await world.handled(NOTIFICATION, event_type, "error") > errors_before
    await poll(tried, timeout=30)


async def test_a_task_reminder_before_its_rep_is_known_waits_and_is_sent_once(any_world: World):
    world = any_world
    org = new_org("late-rep")
    tag = org.split("-")[-1]
    prospect = f"{tag}@callback-buyer.com"
    caller = "rae"
    async with world.client(PIPELINE, admin(org)) as pipeline_api, \
            world.client(ASSIGNMENT, admin(org)) as assignment_api, \
            world.client(NOTIFICATION, admin(org)) as notification_api, \
            world.client(LEAD, admin(org)) as lead_api:
        # A call-back pipeline: its task falls due within the reminder's lead time (60 minutes), so the reminder is
        # due at once rather than hours later.
        pipeline = await ok(pipeline_api.post("/v1/pipelines", json={
            "name": "Call-backs", "stages": [
                {"name": "Call back", "task_templates": [
                    {"title": "Call back within the hour", "type": "call", "required": True,
                     "due": {"amount": 1, "unit": "hours"}, "assignee": {"kind": "owner"}}]},
                {"name": "Decide"}]}), 201)

        held = ["RepCreated", "RepUpdated", "LeadAssigned"]
        async with world.events_held_back(org, NOTIFICATION, held):
            # The rep joins and gets a lead while notification-service has not heard of the rep at all.
            team = await setup_team(assignment_api, org, [caller], "Call-back desk")
            await put_rules(assignment_api, [fallback_rule(pipeline["id"], team, "call-backs", "Call-backs")])
            errors_before = await world.handled(NOTIFICATION, "TaskCreated", "error")
            async with world.client(LEAD, manager(org)) as importer:
                job = await ok(importer.post(
                    "/v1/imports", content=f"Email,First Name,Last Name,Company\n{prospect},Bea,Caller,Buyer Co\n"
                    .encode(), params={"filename": "call-backs.csv"}, headers={"Content-Type": "text/csv"}), 202)

            async def imported() -> str:
                progress = await ok(lead_api.get(f"/v1/imports/{job['id']}"))
                assert progress["status"] == "done" and progress["created"] == 1, progress
                [lead] = (await ok(lead_api.get("/v1/leads")))["items"]
                return lead["id"]
            lead_id = await poll(imported, timeout=30)

            async def task_created() -> dict:
                pos = await position(pipeline_api, lead_id)
                assert pos["owner_id"] == caller and len(pos["open_tasks"]) == 1, pos
                return pos["open_tasks"][0]
            task = await poll(task_created, timeout=30)
            assert task["assignee_id"] == caller

            # notification-service took the TaskCreated, found no such rep and let the bus retry it.
            await notification_tried_and_waited(world, "TaskCreated", errors_before)
            assert smtp_to(world.smtp, rep_email(org, caller)) == []
            assert (await ok(notification_api.get("/v1/deliveries", params={"lead_id": lead_id})))["items"] == []
        # Released: the directory entry arrives after the reminder that needed it.

        async def reminded() -> list[str]:
            subjects = sorted(m["Subject"] for m in smtp_to(world.smtp, rep_email(org, caller)))
            assert subjects == ["New lead assigned to you: Bea Caller", "Task due soon: Call back within the hour"], \
                subjects
            return subjects
        await poll(reminded, timeout=45)

        async def recorded_sent() -> list[dict]:
            items = (await ok(notification_api.get("/v1/deliveries", params={"lead_id": lead_id})))["items"]
            assert sorted((d["reason"], d["status"]) for d in items) == [("lead_assigned", "sent"),
                                                                         ("task_due", "sent")], items
            return items
        deliveries = await poll(recorded_sent, timeout=20)
        assert {d["recipient"] for d in deliveries} == {rep_email(org, caller)}
        reminder = next(m for m in smtp_to(world.smtp, rep_email(org, caller)) if m["Subject"].startswith("Task"))
        assert "Hi Rep Rae" in reminder.get_body(("plain",)).get_content()

        # Nothing parked, nothing else sent: the rep got the two messages once each, the prospect none (no sequence
        # in this org), and Mailchimp was never called about the prospect (no Mailchimp settings here).
        assert (await ok(notification_api.get("/admin/dead-letters")))["items"] == []
        await asyncio.sleep(3)  # a late retry of the reminder would have brought a second one by now
        assert await reminded() == ["New lead assigned to you: Bea Caller", "Task due soon: Call back within the hour"]
        assert smtp_to(world.smtp, prospect) == []
        member = hashlib.md5(prospect.encode()).hexdigest()
        assert [c for c in world.mailchimp.calls if member in c.path] == []


async def test_an_assignment_before_the_leads_details_names_the_lead_once(any_world: World):
    world = any_world
    org = new_org("late-lead")
    setup = await setup_inbound_org(world, org)
    email = f"grace@{org}.hopper-systems.de"
    async with world.client(ASSIGNMENT, admin(org)) as assignment_api, \
            world.client(NOTIFICATION, admin(org)) as notification_api, \
            world.client(LEAD, admin(org)) as lead_api:
        async with world.events_held_back(org, NOTIFICATION, ["LeadCreated", "LeadUpdated"]):
            errors_before = await world.handled(NOTIFICATION, "LeadAssigned", "error")
            accepted = await submit_form(lead_api, setup.form, {
                "email": email, "first": "Grace", "last": "Hopper", "job": "CTO", "company": "Hopper Systems GmbH",
                "country": "DE", "budget": "3000"})
            lead_id = accepted["lead_id"]

            async def assigned() -> str:
                items = (await ok(assignment_api.get("/v1/assignments", params={"lead_id": lead_id})))["items"]
                assert len(items) == 1, items
                return items[0]["owner_id"]
            owner = await poll(assigned, timeout=30)
            assert owner in DACH_REPS

            # notification-service took the LeadAssigned before the lead's details and let the bus retry it.
            await notification_tried_and_waited(world, "LeadAssigned", errors_before)
            assert smtp_to(world.smtp, rep_email(org, owner)) == []
            assert smtp_to(world.smtp, email) == []
            assert (await ok(notification_api.get("/v1/deliveries", params={"lead_id": lead_id})))["items"] == []
        # Released: the lead's details arrive after its assignment.

        member = hashlib.md5(email.encode()).hexdigest()

        async def everything_sent() -> None:
            assert [m["Subject"] for m in smtp_to(world.smtp, rep_email(org, owner))] == [
                "New lead assigned to you: Grace Hopper"]
            assert [m["Subject"] for m in smtp_to(world.smtp, email)] == ["Welcome, Grace"]
            assert [(c.method, c.path.split("/lists/")[1]) for c in world.mailchimp.calls if member in c.path] == [
                ("PUT", f"inbound/members/{member}"), ("POST", f"inbound/members/{member}/tags")]
        await poll(everything_sent, timeout=45)

        [assignment_mail] = smtp_to(world.smtp, rep_email(org, owner))
        body = assignment_mail.get_body(("plain",)).get_content()
        assert "Grace Hopper (Hopper Systems GmbH) is now yours." in body, body
        assert lead_id not in body and lead_id not in assignment_mail["Subject"]

        async def recorded() -> list[tuple[str, str, str]]:
            items = (await ok(notification_api.get("/v1/deliveries", params={"lead_id": lead_id})))["items"]
            finished = sorted((d["recipient_kind"], d["reason"] or d["kind"], d["status"]) for d in items
                              if not (d["recipient_kind"] == "rep" and d["reason"] == "task_due"))
            assert all(status == "sent" for _, _, status in finished), items
            return finished
        await poll(recorded, timeout=20)
        assert (await ok(notification_api.get("/admin/dead-letters")))["items"] == []

        # Every email and Mailchimp call of the org, exactly: a late retry would have brought a second one by now.
        await asyncio.sleep(3)
        await everything_sent()
        others = [r for r in DACH_REPS + OTHER_REPS if r != owner]
        assert {r: smtp_to(world.smtp, rep_email(org, r)) for r in others} == {r: [] for r in others}
