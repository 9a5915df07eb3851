"""Sequences end to end: events through RabbitMQ, a real SMTP server, a clock the test moves."""
from __future__ import annotations

from datetime import UTC, datetime

from notification_testkit import Harness

from salesflow_shared.events import LeadAssignedV1, RepCreatedV1, RepSnapshot, StageAdvancedV1
from salesflow_shared.testing import eventually


def stage(lead_id: str, to: str, *, name: str = "", frm: str | None = None, position: int = 1) -> StageAdvancedV1:
    return StageAdvancedV1(lead_id=lead_id, pipeline_id="pipe-1", from_stage_id=frm, to_stage_id=to,
                           to_stage_name=name or to.title(), to_stage_position=position,
                           reason="entry" if frm is None else "manual", entered_at=datetime.now(UTC))


async def test_stage_entry_sends_the_right_template_once(harness: Harness):
    welcome = await harness.template("Welcome", "Welcome {{ lead.first_name }}, from {{ owner.name }}")
    demo = await harness.template("Demo", "Let's book your demo, {{ lead.first_name }}")
    await harness.post("/v1/sequences", {"name": "on qualified", "trigger": "stage_entry", "stage_id": "qualified",
                                         "steps": [{"template_id": welcome}]})
    await harness.post("/v1/sequences", {"name": "on demo", "trigger": "stage_entry", "stage_id": "demo",
                                         "steps": [{"template_id": demo}]})
    lead = await harness.lead(email="ada@prospect.example")
    await harness.handled(await harness.send(LeadAssignedV1(
        lead_id=lead, owner_id="rep-1", owner_name="Grace Hopper", owner_email="grace@sales.example",
        reason="round robin", decision_id="d-1"), lead))
    entered = harness.envelope(stage(lead, "qualified", name="Qualified"), lead)
    await harness.publish(entered)

    async def one_email():
        mails = harness.smtp.to("ada@prospect.example")
        assert len(mails) == 1
        return mails[0]
    mail = await eventually(one_email)
    assert mail["Subject"] == "Welcome Ada, from Grace Hopper"
    await harness.settled()
    [row] = await harness.deliveries(lead_id=lead, kind="email", recipient_kind="prospect")
    assert row["status"] == "sent" and row["step"] == 0 and row["template_id"] == welcome
    assert mail["Message-ID"] == row["message_id"]
    unsubscribe = mail["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://crm.example.com/v1/sequences/unsubscribe/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.strip("<>") in mail.get_body(("plain",)).get_content()
    assert "Welcome Ada" in mail.get_body(("html",)).get_content()

    # The same event redelivered, and the same transition replayed under a new event id: no second email.
    await harness.publish(entered)
    replay = harness.envelope(stage(lead, "qualified", name="Qualified"), lead, version=entered.subject_version)
    await harness.publish(replay)
    await harness.handled(replay)
    await harness.settled()
    assert len(harness.smtp.to("ada@prospect.example")) == 1
    assert len(await harness.deliveries(lead_id=lead, recipient_kind="prospect")) == 1
    sent = await harness.published("EmailSent")
    prospect_events = [e for e in sent if e["data"]["recipient_kind"] == "prospect"]
    assert [e["data"]["delivery_id"] for e in prospect_events] == [row["id"]]
    assert prospect_events[0]["data"]["rep_id"] == "rep-1"

    # The rep heard of the assignment once, by email.
    assert len(harness.smtp.to("grace@sales.example")) == 1


async def test_sequence_runs_its_steps_on_the_clock_and_stops_when_the_lead_leaves_the_stage(harness: Harness):
    steps = [await harness.template(f"Step {i}", f"Step {i} for {{{{ lead.first_name }}}}") for i in (1, 2, 3)]
    await harness.post("/v1/sequences", {
        "name": "nurture qualified", "trigger": "stage_entry", "stage_id": "qualified",
        "steps": [{"template_id": steps[0]},
                  {"template_id": steps[1], "delay_minutes": 2 * 24 * 60, "business_hours": True},
                  {"template_id": steps[2], "delay_minutes": 3 * 24 * 60}]})
    lead = await harness.lead(email="ny@prospect.example", timezone="America/New_York")
    await harness.handled(await harness.send(stage(lead, "qualified"), lead))

    async def subjects(n):
        mails = harness.smtp.to("ny@prospect.example")
        assert len(mails) == n
        return [m["Subject"] for m in mails]
    assert await eventually(lambda: subjects(1)) == ["Step 1 for Ada"]
    await harness.settled()
    [enrollment] = await harness.enrollments(lead)
    # Monday 10:00 UTC + 2 days = Wednesday 05:00 in New York: moved to 09:00 New York = 14:00 UTC.
    assert enrollment["next_step"] == 1
    assert enrollment["next_due_at"] == datetime(2026, 1, 7, 14, 0, tzinfo=UTC)

    harness.clock.advance(days=2)  # Wednesday 10:00 UTC: not due yet
    await harness.settled()
    assert len(harness.smtp.to("ny@prospect.example")) == 1
    harness.clock.advance(hours=4)  # 14:00 UTC
    assert await eventually(lambda: subjects(2)) == ["Step 1 for Ada", "Step 2 for Ada"]

    # The lead moves on: the sequence stops, step 3 never goes out.
    await harness.handled(await harness.send(stage(lead, "proposal", frm="qualified", position=2), lead))
    [enrollment] = await harness.enrollments(lead)
    assert (enrollment["status"], enrollment["stop_reason"]) == ("stopped", "left_stage")
    harness.clock.advance(days=10)
    await harness.settled()
    assert len(harness.smtp.to("ny@prospect.example")) == 2
    log = (await harness.client.get("/v1/deliveries", params={"lead_id": lead}, headers=harness.admin)).json()
    assert [(d["step"], d["status"], d["reason"]) for d in log["items"]] == [(1, "sent", "sequence"),
                                                                            (0, "sent", "sequence")]


async def test_unsubscribe_link_stops_the_sequence(harness: Harness):
    first = await harness.template("First", "Hello {{ lead.first_name }}")
    second = await harness.template("Second", "Still there {{ lead.first_name }}?")
    await harness.post("/v1/sequences", {"name": "web form welcome", "trigger": "lead_created", "source": "web_form",
                                         "steps": [{"template_id": first},
                                                   {"template_id": second, "delay_minutes": 60}]})
    lead = await harness.lead(email="bye@prospect.example", source="web_form")
    other = await harness.lead(email="import@prospect.example", source="import")

    async def mail():
        mails = harness.smtp.to("bye@prospect.example")
        assert len(mails) == 1
        return mails[0]
    message = await eventually(mail)
    url = message["List-Unsubscribe"].strip("<>").replace("https://crm.example.com", "")
    assert (await harness.client.get(url)).status_code == 200  # a GET only shows the button
    assert (await harness.enrollments(lead))[0]["status"] == "active"
    response = await harness.client.post(url)
    assert response.status_code == 200 and response.json() == {"unsubscribed": True}
    assert (await harness.client.post(url[:-3] + "xyz")).status_code == 404
    [enrollment] = await harness.enrollments(lead)
    assert (enrollment["status"], enrollment["stop_reason"]) == ("stopped", "unsubscribed")
    harness.clock.advance(hours=2)
    await harness.settled()
    assert len(harness.smtp.to("bye@prospect.example")) == 1
    assert await harness.enrollments(other) == []  # the web-form sequence ignores imported leads


async def test_send_time_failures_are_recorded_never_a_crash(harness: Harness):
    # Renders with the sample variables (no custom fields), breaks on a lead that has some but not 'plan'.
    fragile = await harness.template("Fragile", "Your plan: {{ lead.custom_fields['plan'] if lead.custom_fields "
                                                "else 'none' }}")
    fine = await harness.template("Fine", "Hello {{ lead.first_name }}")
    await harness.post("/v1/sequences", {"name": "two steps", "trigger": "stage_entry", "stage_id": "s1",
                                         "steps": [{"template_id": fragile}, {"template_id": fine}]})
    lead = await harness.lead(email="odd@prospect.example", custom_fields={"size": 3})
    harness.smtp.fail_next = 1  # the relay answers 451 once
    await harness.handled(await harness.send(stage(lead, "s1"), lead))
    await harness.settled()
    [failed] = await harness.deliveries(lead_id=lead, step=0)
    assert failed["status"] == "failed" and "does not render" in failed["error"] and "plan" in failed["error"]
    [event] = await harness.published("EmailFailed")
    assert event["data"]["delivery_id"] == failed["id"] and event["data"]["step"] == 0

    # The sequence goes on; step 2's first attempt meets the 451 and is retried after its backoff.
    harness.clock.advance(seconds=1)
    await harness.settled()
    [retrying] = await harness.deliveries(lead_id=lead, step=1)
    assert retrying["status"] == "pending" and retrying["error"].startswith("SMTP 451")
    harness.clock.advance(seconds=harness.settings.delivery_retry_base_s + 1)
    await harness.settled()
    [sent] = await harness.deliveries(lead_id=lead, step=1)
    assert sent["status"] == "sent" and sent["attempts"] == 2
    assert [m["Subject"] for m in harness.smtp.to("odd@prospect.example")] == ["Hello Ada"]


async def test_outcome_sequences_onboarding_on_won_and_nurture_on_lost_until_reopened(harness: Harness):
    from salesflow_shared.events import LeadLostV1, LeadReopenedV1, LeadWonV1

    working = await harness.template("Working", "Working on it {{ lead.first_name }}")
    onboarding = await harness.template("Onboarding", "Welcome aboard {{ lead.first_name }}")
    nurture = [await harness.template(f"Nurture {i}", f"Nurture {i}") for i in (1, 2)]
    await harness.post("/v1/sequences", {"name": "working", "trigger": "stage_entry", "stage_id": "s1",
                                         "steps": [{"template_id": working},
                                                   {"template_id": working, "delay_minutes": 600}]})
    await harness.post("/v1/sequences", {"name": "onboarding", "trigger": "lead_won",
                                         "steps": [{"template_id": onboarding}]})
    await harness.post("/v1/sequences", {"name": "nurture", "trigger": "lead_lost",
                                         "steps": [{"template_id": nurture[0], "delay_minutes": 60},
                                                   {"template_id": nurture[1], "delay_minutes": 60 * 24 * 30}]})
    winner = await harness.lead(email="win@prospect.example")
    loser = await harness.lead(email="lose@prospect.example")
    for lead in (winner, loser):
        await harness.handled(await harness.send(stage(lead, "s1"), lead))
    await harness.settled()
    now = harness.clock.now()
    await harness.handled(await harness.send(LeadWonV1(lead_id=winner, pipeline_id="pipe-1", won_at=now), winner))
    await harness.handled(await harness.send(LeadLostV1(lead_id=loser, pipeline_id="pipe-1", reason="timing",
                                                        lost_at=now), loser))
    harness.clock.advance(hours=1)
    await harness.settled()
    assert [m["Subject"] for m in harness.smtp.to("win@prospect.example")] == ["Working on it Ada",
                                                                               "Welcome aboard Ada"]
    assert [m["Subject"] for m in harness.smtp.to("lose@prospect.example")] == ["Working on it Ada", "Nurture 1"]
    reasons = {e["stop_reason"] for lead in (winner, loser) for e in await harness.enrollments(lead)}
    assert reasons == {"won", "lost", None}

    await harness.handled(await harness.send(LeadReopenedV1(lead_id=loser, pipeline_id="pipe-1", reopened_at=now),
                                             loser))
    harness.clock.advance(days=31)
    await harness.settled()
    assert len(harness.smtp.to("lose@prospect.example")) == 2
    assert "reopened" in {e["stop_reason"] for e in await harness.enrollments(loser)}


async def test_events_out_of_order_the_step_waits_for_the_lead(waiting_harness: Harness):
    from salesflow_shared.events import ContactData, LeadCreatedV1, LeadSnapshot

    harness = waiting_harness
    welcome = await harness.template("Welcome", "Welcome {{ lead.first_name }}, from {{ owner.name }}")
    await harness.post("/v1/sequences", {"name": "s", "trigger": "stage_entry", "stage_id": "s1",
                                         "steps": [{"template_id": welcome}]})
    lead = "lead-early-bird"
    # The assignment's rep notification waits for the lead's details (retried by the bus).
    assigned = await harness.send(LeadAssignedV1(lead_id=lead, owner_id="rep-1", owner_name="Grace",
                                                 owner_email="grace@sales.example", reason="rr"), lead)
    await harness.handled(await harness.send(stage(lead, "s1"), lead))
    await harness.settled()
    assert harness.smtp.to("late@prospect.example") == []  # nothing known of the lead yet: the step waits
    snapshot = LeadSnapshot(lead_id=lead, contact=ContactData(first_name="Lin", email="late@prospect.example"))
    await harness.handled(await harness.send(LeadCreatedV1(lead=snapshot), lead))
    await harness.handled(assigned, timeout=15)
    harness.clock.advance(seconds=11)
    await harness.settled()
    assert [m["Subject"] for m in harness.smtp.to("late@prospect.example")] == ["Welcome Lin, from Grace"]
    assert [m["Subject"] for m in harness.smtp.to("grace@sales.example")] == ["New lead assigned to you: Lin"]


async def test_a_rep_sees_only_its_own_leads_enrollments_and_keeps_those_it_handed_over(harness: Harness):
    from salesflow_shared.testing import auth_headers
    welcome = await harness.template("Welcome", "Welcome {{ lead.first_name }}")
    sequence = await harness.post("/v1/sequences", {"name": "on qualified", "trigger": "stage_entry",
                                                    "stage_id": "qualified", "steps": [{"template_id": welcome}]})
    mine, theirs = await harness.lead(email="mine@prospect.example"), await harness.lead(email="t@prospect.example")
    for rep_id in ("rep-1", "rep-2", "am-1"):  # the directory knows the reps (assignment-service publishes it)
        await harness.handled(await harness.send(RepCreatedV1(rep=RepSnapshot(
            rep_id=rep_id, name=rep_id, email=f"{rep_id}@sales.example")), rep_id))
    for lead, owner in ((mine, "rep-1"), (theirs, "rep-2")):
        await harness.handled(await harness.send(LeadAssignedV1(lead_id=lead, owner_id=owner, reason="rr"), lead))
        await harness.handled(await harness.send(stage(lead, "qualified"), lead))
    url = f"/v1/sequences/{sequence['id']}/enrollments"

    async def leads_seen(rep_id):
        response = await harness.client.get(url, headers=auth_headers(harness.org, "rep", rep_id))
        assert response.status_code == 200
        return sorted(e["lead_id"] for e in response.json()["items"])
    assert await leads_seen("rep-1") == [mine]
    assert await leads_seen("rep-2") == [theirs]
    assert await leads_seen("rep-9") == []
    everyone = await harness.client.get(url, headers=auth_headers(harness.org, "manager", "m-1"))
    assert sorted(e["lead_id"] for e in everyone.json()["items"]) == sorted([mine, theirs])
    # rep-1 hands its lead over: it still sees that lead's enrollment, the new owner sees it too
    await harness.handled(await harness.send(LeadAssignedV1(lead_id=mine, owner_id="am-1", previous_owner_id="rep-1",
                                                            reason="won: account management"), mine))
    assert await leads_seen("rep-1") == [mine]
    assert await leads_seen("am-1") == [mine]
    await harness.settled()
    await harness.retire()
