"""The rep directory comes from assignment-service's Rep* events, and a rep notification is never lost nor
rendered from half the data: when the rep or the lead's details have not arrived yet, the event waits (the bus
retries it) and, when they never come, it is parked in the dead letters for an admin to replay. Each test
forces the unlucky order: the notification's event is handled (and fails) before the one it needs."""
from __future__ import annotations

from datetime import timedelta

from notification_testkit import Harness

from salesflow_shared.events import (
    LeadAssignedV1,
    LeadWonV1,
    RepCreatedV1,
    RepDeactivatedV1,
    RepSnapshot,
    RepUpdatedV1,
    TaskCreatedV1,
)
from salesflow_shared.testing import eventually

RETRIES = 3  # the waiting_harness's retry delays (conftest.py): three retries, then the event is parked


def rep_entry(rep_id: str, email: str | None = None, name: str = "Nia Newcomer", **extra) -> RepSnapshot:
    return RepSnapshot(rep_id=rep_id, name=name, email=email or f"{rep_id}@sales.example", team_ids=["team-1"],
                       timezone="Europe/Berlin", **extra)


def failed_attempts(harness: Harness, event_type: str) -> float:
    return harness.context.metrics.messages_handled.labels(event_type, "error")._value.get()


async def fails_once(harness: Harness, event_type: str, before: float) -> None:
    """Until the service has tried the event once and failed (it is waiting for its retry now)."""
    async def check() -> None:
        assert failed_attempts(harness, event_type) > before
    await eventually(check, timeout=10)


def task(harness: Harness, lead_id: str, rep_id: str) -> TaskCreatedV1:
    return TaskCreatedV1(task_id=f"task-{lead_id}", lead_id=lead_id, title="Call back", task_type="call",
                         due_at=harness.clock.now() + timedelta(hours=3), assignee_id=rep_id)


async def test_a_reminder_for_a_rep_not_known_yet_waits_for_the_directory_entry(waiting_harness: Harness):
    harness = waiting_harness
    lead = await harness.lead()
    errors = failed_attempts(harness, "TaskCreated")
    created = await harness.send(task(harness, lead, "nia"), f"task-{lead}")
    await fails_once(harness, "TaskCreated", errors)
    assert await harness.deliveries(reason="task_due") == []  # nothing recorded as failed, nothing lost
    await harness.handled(await harness.send(RepCreatedV1(rep=rep_entry("nia")), "nia"))
    await harness.handled(created, timeout=15)

    [reminder] = await harness.deliveries(reason="task_due")
    assert (reminder["status"], reminder["recipient"], reminder["rep_id"]) == ("pending", "nia@sales.example",
                                                                               "nia")
    harness.clock.advance(timedelta(hours=3))  # the reminder is due 30 minutes before the task
    await harness.settled()
    [mail] = harness.smtp.to("nia@sales.example")
    assert mail["Subject"] == "Task due soon: Call back"
    assert "Hi Nia Newcomer" in mail.get_body(("plain",)).get_content()
    assert [d["status"] for d in await harness.deliveries(reason="task_due")] == ["sent"]


async def test_a_reminder_whose_rep_never_arrives_is_parked_visibly_and_replayed_once(waiting_harness: Harness):
    harness = waiting_harness
    lead = await harness.lead()
    created = await harness.send(task(harness, lead, "ghost"), f"task-{lead}")

    async def parked() -> dict:
        response = await harness.client.get("/admin/dead-letters", headers=harness.admin)
        assert response.status_code == 200, response.text
        items = [i for i in response.json()["items"] if i["event_id"] == str(created.id)]
        assert len(items) == 1, response.json()
        return items[0]
    item = await eventually(parked, timeout=20)
    assert item["event_type"] == "TaskCreated" and item["attempts"] == RETRIES + 1
    assert "rep 'ghost' is not in the directory here yet" in item["last_error"]
    assert await harness.deliveries(reason="task_due") == []

    await harness.handled(await harness.send(RepCreatedV1(rep=rep_entry("ghost", name="Gus Ghost")), "ghost"))
    for _ in range(2):  # the admin replays twice: one reminder
        response = await harness.client.post("/admin/dead-letters/replay", headers=harness.admin)
        assert response.status_code == 200, response.text
        await harness.handled(created, timeout=15)
    [reminder] = await harness.deliveries(reason="task_due")
    assert (reminder["status"], reminder["recipient"]) == ("pending", "ghost@sales.example")


async def test_an_assignment_before_the_leads_details_waits_and_names_the_lead(waiting_harness: Harness):
    harness = waiting_harness
    lead = "lead-early-assign"
    errors = failed_attempts(harness, "LeadAssigned")
    assigned = await harness.send(LeadAssignedV1(
        lead_id=lead, owner_id="ann", owner_name="Ann Aster", owner_email="ann@sales.example",
        reason="round robin", decision_id="d-1"), lead)
    await fails_once(harness, "LeadAssigned", errors)
    assert await harness.deliveries(reason="lead_assigned") == []
    await harness.lead(lead, first_name="Grace")  # LeadCreated arrives after the assignment
    await harness.handled(assigned, timeout=15)
    await harness.settled()

    [mail] = harness.smtp.to("ann@sales.example")
    assert mail["Subject"] == "New lead assigned to you: Grace Lovelace"
    assert lead not in mail["Subject"] and "Grace Lovelace" in mail.get_body(("plain",)).get_content()


async def test_the_newest_directory_entry_wins_whatever_the_order(waiting_harness: Harness):
    harness = waiting_harness
    lead = await harness.lead()
    # The change (version 3) overtakes the creation (version 1); an older decision's owner address comes last.
    await harness.handled(await harness.send(RepUpdatedV1(
        rep=rep_entry("rae", email="rae.new@sales.example", name="Rae Renamed"), changed=["email", "name"]),
        "rae", version=3))
    await harness.handled(await harness.send(RepCreatedV1(rep=rep_entry("rae", email="rae.old@sales.example")),
                                             "rae", version=1))
    await harness.handled(await harness.send(LeadAssignedV1(
        lead_id=lead, owner_id="rae", owner_name="Rae Old", owner_email="rae.old@sales.example",
        reason="round robin", decision_id="d-rae"), lead))
    await harness.settled()
    assert harness.smtp.to("rae.old@sales.example") == []
    [mail] = harness.smtp.to("rae.new@sales.example")
    assert "Hi Rae Renamed" in mail.get_body(("plain",)).get_content()

    # Deactivated: the entry is kept (history, reminders of tasks still open) and marked inactive.
    await harness.handled(await harness.send(RepDeactivatedV1(
        rep=rep_entry("rae", email="rae.new@sales.example", name="Rae Renamed", active=False)), "rae", version=4))
    async with harness.context.database.session() as session:
        from notification_service.adapters.repository import get_rep
        rep = await get_rep(session, harness.org, "rae")
    assert rep is not None and (rep["active"], rep["version"], rep["team_ids"]) == (False, 4, ["team-1"])


async def test_the_account_manager_gets_the_customer_hand_over_even_before_the_win_arrives(
        waiting_harness: Harness):
    harness = waiting_harness
    lead = await harness.lead(value="4000")
    for rep_id, name in (("closer", "Cleo Closer"), ("am", "Abe Account")):
        await harness.handled(await harness.send(RepCreatedV1(rep=rep_entry(rep_id, name=name)), rep_id))
    # The account manager's assignment overtakes the win it follows.
    errors = failed_attempts(harness, "LeadAssigned")
    handover = await harness.send(LeadAssignedV1(
        lead_id=lead, owner_id="am", previous_owner_id="closer", trigger="lead_won", reason="account manager",
        decision_id="d-am"), lead)
    await fails_once(harness, "LeadAssigned", errors)
    await harness.handled(await harness.send(LeadWonV1(
        lead_id=lead, pipeline_id="pipe-1", value="5250.00", currency="EUR", owner_id="closer",
        won_at=harness.clock.now(), notes="Wants onboarding in March;\nbilling via procurement."), lead))
    await harness.handled(handover, timeout=15)
    await harness.settled()

    [mail] = harness.smtp.to("am@sales.example")
    assert mail["Subject"] == "Customer hand-over: Ada Lovelace"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Cleo Closer won Ada Lovelace (5250.00 EUR); the customer is yours now." in text
    assert "Closed by: Cleo Closer <closer@sales.example>" in text
    assert "Wants onboarding in March;\nbilling via procurement." in text
    assert harness.smtp.to("closer@sales.example") == []  # the closer is not told they were assigned anything
    assert [d["reason"] for d in await harness.deliveries(rep_id="am")] == ["customer_handover"]
