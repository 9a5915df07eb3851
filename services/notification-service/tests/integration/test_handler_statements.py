"""The statements a delivery costs on the paths every inbound lead takes (issue 21: at most three per delivery on
the hot paths). Each test hands the deliveries to the dispatcher as the bus hands a batch over and lists what that
batch sent, statement by statement (the inbox claim included; BEGIN and COMMIT are not statements); the counts are
read off the handlers."""
from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from notification_testkit import Harness

from notification_service.adapters import repository
from notification_service.adapters.orm import deliveries, enrollments, leads, mailchimp_members, reps
from notification_service.adapters.repository import Delivery
from notification_service.service_layer.deliveries import DeliveryWorker, Outcome, new_delivery
from salesflow_shared.events import (
    ContactData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadSnapshot,
    LeadUpdatedV1,
    RepCreatedV1,
    RepSnapshot,
    StageAdvancedV1,
    TaskCreatedV1,
    TaskReassignedV1,
)
from salesflow_shared.testing import statements_sent


def what(statement: str) -> str:
    """A statement as 'INSERT INTO table', 'UPDATE table', 'SELECT' or 'WITH name' (a CTE's first name)."""
    for pattern in (r"^(INSERT INTO \w+)", r"^(UPDATE \w+)", r"^(WITH \w+)", r"^(SELECT)"):
        found = re.match(pattern, statement)
        if found:
            return found.group(1)
    return statement[:40]


async def in_directory(harness: Harness, rep_id: str) -> None:
    """assignment-service's directory entry for the rep, handled."""
    entry = RepSnapshot(rep_id=rep_id, name="Nia Newcomer", email=f"{rep_id}@sales.example")
    await harness.handled(await harness.send(RepCreatedV1(rep=entry), rep_id))


def assigned(lead_id: str, rep_id: str) -> LeadAssignedV1:
    return LeadAssignedV1(lead_id=lead_id, owner_id=rep_id, owner_name="Told By Assignment",
                          owner_email=f"{rep_id}@assignment.example", reason="round robin",
                          decision_id=f"d-{lead_id}")


async def test_a_first_assignment_to_a_rep_in_the_directory_is_three_statements_and_keeps_no_copy_of_the_rep(
        harness: Harness):
    await in_directory(harness, "nia")
    lead = await harness.lead()
    sent = await harness.statements_handling(harness.envelope(assigned(lead, "nia"), lead))
    # The inbox claim; the lead's owner written by the statement that locks it (which says the owner's directory
    # entry is held, so what the assignment says of the owner is not written) and reads the rep notice (rep,
    # template, webhooks; PostgreSQL: the write a data-modifying CTE); the email's delivery.
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "WITH owned_lead", "INSERT INTO deliveries"], sent
    assert "INSERT INTO leads" in sent[1] and "JOIN reps" in sent[1] and "JOIN templates" in sent[1]
    [email] = await harness.deliveries(lead_id=lead, reason="lead_assigned")
    assert email["recipient"] == "nia@sales.example"  # the directory's address, not the assignment's
    assert email["rep_id"] == "nia" and email["status"] == "pending"


async def test_a_first_assignment_to_a_rep_not_in_the_directory_keeps_what_it_says_of_the_rep(harness: Harness):
    lead = await harness.lead()
    sent = await harness.statements_handling(harness.envelope(assigned(lead, "newbie"), lead))
    # As above, with the rep's copy from the assignment written (kept until the directory's entry arrives), and
    # the rep notice read again after it (the one read with the owner's write had no rep).
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "WITH owned_lead", "INSERT INTO reps", "SELECT",
                                       "INSERT INTO deliveries"], sent
    async with harness.context.database.session() as session:
        [rep] = (await session.execute(sa.select(reps.c.name, reps.c.email, reps.c.version).where(
            reps.c.org_id == harness.org, reps.c.rep_id == "newbie"))).all()
    assert tuple(rep) == ("Told By Assignment", "newbie@assignment.example", 0)
    [email] = await harness.deliveries(lead_id=lead, reason="lead_assigned")
    assert email["recipient"] == "newbie@assignment.example"


async def test_a_stage_entry_that_puts_the_lead_on_a_list_is_four_statements(harness: Harness):
    response = await harness.client.put("/v1/mailchimp/settings", json={"api_key": "0123456789abcdef-us6"},
                                        headers={**harness.admin, "If-Match": '"0"'})
    assert response.status_code == 200, response.text
    await harness.define_pipeline("pipe-1", ["qualified", "proposal"])
    await harness.post("/v1/mailchimp/rules", {"stage_id": "qualified", "action": "subscribe", "list_id": "L1",
                                               "tags": ["qualified"]})
    lead = await harness.lead()
    entered = StageAdvancedV1(lead_id=lead, pipeline_id="pipe-1", to_stage_id="qualified", to_stage_name="Qualified",
                              to_stage_position=1, reason="entry", entered_at=datetime.now(UTC), owner_id="nia")
    sent = await harness.statements_handling(harness.envelope(entered, lead))
    # The inbox claim; the lead locked (with whether the pipeline's definition is held); its stage and owner
    # written by the statement that also reads its sequences and Mailchimp settings (PostgreSQL: the write a
    # data-modifying CTE, the read's snapshot taken with the lock held); the list call's delivery added by the
    # statement that also remembers the lead as the list's member (a data-modifying CTE too).
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "INSERT INTO leads", "WITH written_lead",
                                       "WITH remembered_member"], sent
    assert "UPDATE leads SET" in sent[2] and "JOIN mailchimp_accounts" in sent[2]
    assert "INSERT INTO mailchimp_members" in sent[-1] and "INSERT INTO deliveries" in sent[-1]
    [call] = await harness.deliveries(lead_id=lead, kind="mailchimp")
    assert call["recipient"] == "mailchimp:L1" and call["status"] == "pending" and call["rep_id"] == "nia"
    async with harness.context.database.session() as session:
        [member] = (await session.execute(sa.select(mailchimp_members).where(
            mailchimp_members.c.org_id == harness.org, mailchimp_members.c.lead_id == lead))).mappings().all()
    assert (member["list_id"], member["subscribed"], member["tags"]) == ("L1", True, ["qualified"])
    assert member["subscriber_hash"] == call["payload"]["ops"][0]["hash"]
    async with harness.context.database.session() as session:
        [known] = (await session.execute(sa.select(leads).where(
            leads.c.org_id == harness.org, leads.c.lead_id == lead))).mappings().all()
    assert (known["stage_id"], known["owner_id"], known["pipeline_version"]) == ("qualified", "nia", 1)


def task_created(harness: Harness, task_id: str, lead_id: str, rep_id: str) -> TaskCreatedV1:
    return TaskCreatedV1(task_id=task_id, lead_id=lead_id, title=f"Call back ({task_id})", task_type="call",
                         due_at=harness.clock.now() + timedelta(days=2), assignee_id=rep_id)


async def test_a_stages_two_task_reminders_delivered_together_are_four_statements(harness: Harness):
    await in_directory(harness, "nia")
    lead = await harness.lead()
    first, second = (harness.envelope(task_created(harness, f"task-{n}-{lead}", lead, "nia"), f"task-{n}-{lead}")
                     for n in (1, 2))
    sent = await harness.statements_handling(first, second)
    # One inbox claim for the batch; the rep notice read once (same rep, same lead); each task's assignee recorded
    # by the statement that adds its reminder (PostgreSQL: the assignee's upsert a data-modifying CTE, the reminder
    # added only when it recorded the assignment).
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "SELECT", "WITH recorded_assignee",
                                       "WITH recorded_assignee"], sent
    reminders = await harness.deliveries(lead_id=lead, reason="task_due")
    assert sorted(r["idem_key"] for r in reminders) == [f"task_due:task-1-{lead}:email",
                                                        f"task_due:task-2-{lead}:email"]
    assert {(r["recipient"], r["status"]) for r in reminders} == {("nia@sales.example", "pending")}


async def test_a_task_created_after_its_reassignment_adds_no_reminder_in_its_three_statements(harness: Harness):
    await in_directory(harness, "nia")
    await in_directory(harness, "otto")
    lead = await harness.lead()
    task_id = f"task-{lead}"
    due_at = harness.clock.now() + timedelta(days=2)
    await harness.handled(await harness.send(TaskReassignedV1(
        task_id=task_id, lead_id=lead, title="Call back", due_at=due_at, assignee_id="otto",
        previous_assignee_id="nia", reason="manual"), task_id, version=2))
    sent = await harness.statements_handling(harness.envelope(task_created(harness, task_id, lead, "nia"), task_id,
                                                              version=1))
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "SELECT", "WITH recorded_assignee"], sent
    # Only the reassignment's reminder (for otto); the late creation's (for nia) was not added.
    assert [r["recipient"] for r in await harness.deliveries(lead_id=lead, reason="task_due")] == [
        "otto@sales.example"]


async def test_a_sequence_batchs_step_deliveries_and_enrollment_moves_are_one_statement(harness: Harness):
    now = harness.clock.now()
    later = now + timedelta(days=1)
    runs = [repository.Enrollment(
        id=str(uuid.uuid4()), org_id=harness.org, sequence_id="seq-1", lead_id=f"lead-{n}", trigger_key="created",
        stage_id=None, status="active", stop_reason=None, next_step=0, next_due_at=now, created_at=now,
        updated_at=now) for n in range(3)]
    async with harness.context.database.session() as session:
        for run in runs:
            assert await repository.add_enrollment(session, run)
        await session.commit()
    steps = [new_delivery(org_id=harness.org, idem_key=f"sequence:seq-1:lead:{run.lead_id}:created:step:0",
                          kind="email", recipient_kind="prospect", reason="sequence", now=now, lead_id=run.lead_id,
                          sequence_id="seq-1", enrollment_id=run.id, step=0, payload={"subject": "Welcome"},
                          recipient=f"{run.lead_id}@example.com") for run in runs[:2]]
    moves = [repository.EnrollmentAdvance(enrollment_id=runs[0].id, next_step=1, next_due_at=later, now=now),
             repository.EnrollmentAdvance(enrollment_id=runs[1].id, next_step=1, next_due_at=None, now=now),
             repository.EnrollmentAdvance(enrollment_id=runs[2].id, next_step=1, next_due_at=later, now=now)]
    async with harness.context.database.session() as session:
        _, sent = await statements_sent(harness.context.database,
                                        lambda: repository.add_deliveries_advancing_enrollments(session, steps, moves))
        await session.commit()
    # The two steps' deliveries, each with its enrollment's move, in one statement (executed with both rows); the
    # third enrollment's move, which has no delivery in the batch (a step recorded as failed at once), alone.
    assert [what(s) for s in sent] == ["WITH advanced_enrollment", "UPDATE enrollments"], sent
    async with harness.context.database.session() as session:
        moved = (await session.execute(sa.select(enrollments.c.id, enrollments.c.next_step, enrollments.c.status,
                                                 enrollments.c.next_due_at, enrollments.c.lead_id)
                                       .where(enrollments.c.org_id == harness.org))).all()
        added = (await session.execute(sa.select(deliveries.c.enrollment_id, deliveries.c.status).where(
            deliveries.c.org_id == harness.org))).all()
    # Each enrollment kept its own row (id, lead), moved on as told; the second completed (no next step).
    assert sorted(tuple(row) for row in moved) == sorted([
        (runs[0].id, 1, "active", later, "lead-0"), (runs[1].id, 1, "completed", None, "lead-1"),
        (runs[2].id, 1, "active", later, "lead-2")])
    assert sorted(tuple(row) for row in added) == sorted([(runs[0].id, "pending"), (runs[1].id, "pending")])


async def claimed_rep_email(harness: Harness, lead_id: str, *, attempts: int) -> Delivery:
    """A rep's email as a worker's claim left it: `sending`, at its `attempts`-th attempt (its lease far ahead, so
    the service's own worker leaves it alone)."""
    now = harness.clock.now()
    email = dataclasses.replace(new_delivery(
        org_id=harness.org, idem_key=f"lead_assigned:{lead_id}:nia:email", kind="email", recipient_kind="rep",
        reason="lead_assigned", now=now, lead_id=lead_id, rep_id="nia", recipient="nia@sales.example",
        payload={"to": "nia@sales.example", "subject": "A new lead"}), status="sending", attempts=attempts,
        next_attempt_at=now + timedelta(days=1))
    async with harness.context.database.session() as session:
        assert await repository.add_delivery(session, email)
        await session.commit()
    return email


def handed_to_relay(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The types of the events the service's relay is handed from now on (it still publishes them)."""
    handed: list[str] = []
    hand_over = harness.context.relay.hand_over

    def recording(events: Any) -> None:
        handed.extend(message.event_type for message, _ in events)
        hand_over(events)
    monkeypatch.setattr(harness.context.relay, "hand_over", recording)
    return handed


async def test_an_emails_sent_mark_writes_its_events_in_the_same_statement(harness: Harness,
                                                                          monkeypatch: pytest.MonkeyPatch):
    lead = await harness.lead()
    email = await claimed_rep_email(harness, lead, attempts=1)
    handed = handed_to_relay(harness, monkeypatch)
    worker = DeliveryWorker(harness.context)
    _, sent = await statements_sent(harness.context.database,
                                    lambda: worker._record_once([(email, Outcome(ok=True))]))
    # The mark (fenced on the attempt) and, by a data-modifying CTE of the same statement, the outbox rows of the
    # deliveries it marked: a rep's email tells EmailSent and RepNotified.
    assert [what(s) for s in sent] == ["WITH marked_sent"], sent
    assert "INSERT INTO outbox" in sent[0]
    [row] = await harness.deliveries(id=email.id)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("sent", 1, None)
    assert [e["data"]["delivery_id"] for e in await harness.published("EmailSent")] == [email.id]
    assert [e["data"]["delivery_id"] for e in await harness.published("RepNotified")] == [email.id]
    assert handed == ["EmailSent", "RepNotified"]  # published by the relay from hand, as a commit's own events


async def test_an_overtaken_attempts_sent_mark_writes_and_publishes_nothing_beside_a_current_one(
        harness: Harness, monkeypatch: pytest.MonkeyPatch):
    current_lead, overtaken_lead = await harness.lead(), await harness.lead()
    current = await claimed_rep_email(harness, current_lead, attempts=1)
    # Its lease ran out while the first attempt was in flight, and a second attempt claimed it.
    second_attempt = await claimed_rep_email(harness, overtaken_lead, attempts=2)
    first_attempt = dataclasses.replace(second_attempt, attempts=1)
    handed = handed_to_relay(harness, monkeypatch)
    worker = DeliveryWorker(harness.context)
    _, sent = await statements_sent(harness.context.database, lambda: worker._record_once(
        [(current, Outcome(ok=True)), (first_attempt, Outcome(ok=True))]))
    # One mark for both; whether the overtaken attempt's lead is erased, which its mark did not say (scrubbed
    # then, as after any attempt about an erased lead).
    assert [what(s) for s in sent] == ["WITH marked_sent", "SELECT"], sent
    assert sent[1].startswith("SELECT leads.erased FROM leads")
    [overtaken] = await harness.deliveries(id=second_attempt.id)
    assert (overtaken["status"], overtaken["attempts"]) == ("sending", 2)  # the second attempt's to record
    assert [e["data"]["delivery_id"] for e in await harness.published("EmailSent")] == [current.id]
    assert [e["data"]["delivery_id"] for e in await harness.published("RepNotified")] == [current.id]
    assert handed == ["EmailSent", "RepNotified"]


async def test_a_stage_entry_sees_what_a_transaction_holding_the_lead_wrote_before_letting_it_go(harness: Harness):
    """The stage entry's follow-ups are read by the statement that writes the lead, after the statement that locks
    it: a read in the lock's statement would see the tables as they were before it waited for the lock."""
    welcome = await harness.template("Welcome", "Hello")
    sequence = await harness.post("/v1/sequences", {"name": "s0 follow-up", "trigger": "stage_entry",
                                                    "stage_id": "s0", "steps": [{"template_id": welcome}]})
    lead = await harness.lead()
    now = harness.clock.now()
    enrollment = repository.Enrollment(
        id=str(uuid.uuid4()), org_id=harness.org, sequence_id=sequence["id"], lead_id=lead, trigger_key="stage:s0",
        stage_id="s0", status="active", stop_reason=None, next_step=0, next_due_at=now + timedelta(days=1),
        created_at=now, updated_at=now)
    entered = StageAdvancedV1(lead_id=lead, pipeline_id="pipe-1", to_stage_id="qualified", to_stage_name="Qualified",
                              to_stage_position=1, reason="entry", entered_at=datetime.now(UTC))
    async with harness.context.database.session() as holder:
        await repository.lock_lead(holder, harness.org, lead, now)  # another replica's transaction holds the lead
        handling = asyncio.create_task(harness.statements_handling(harness.envelope(entered, lead)))
        await asyncio.sleep(0.5)  # the stage entry waits for the lock
        assert not handling.done()
        assert await repository.add_enrollment(holder, enrollment)  # ... and enrolls it meanwhile
        await holder.commit()
    await handling
    # The stage entry saw the enrollment and stopped it (it is for a stage the lead has left).
    [stopped] = await harness.enrollments(lead)
    assert (stopped["id"], stopped["status"], stopped["stop_reason"]) == (enrollment.id, "stopped", "left_stage")


def snapshot(lead_id: str, email: str, *, first_name: str = "Ada") -> LeadSnapshot:
    return LeadSnapshot(lead_id=lead_id, contact=ContactData(first_name=first_name, last_name="Lovelace", email=email))


async def test_a_new_lead_started_on_a_sequence_is_three_statements(harness: Harness):
    welcome = await harness.template("Welcome", "Hello")
    sequence = await harness.post("/v1/sequences", {"name": "welcome", "trigger": "lead_created",
                                                    "steps": [{"template_id": welcome}]})
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    sent = await harness.statements_handling(harness.envelope(LeadCreatedV1(lead=snapshot(lead, "ada@example.com")),
                                                              lead))
    # The inbox claim; the snapshot stored by the statement that also reads the lead's sequences and Mailchimp
    # settings (PostgreSQL: the upsert a data-modifying CTE; nobody held the lead meanwhile, so what it read
    # stands); the enrollment.
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "WITH stored_lead", "INSERT INTO enrollments"], sent
    assert "INSERT INTO leads" in sent[1] and "JOIN sequences" in sent[1] and "JOIN mailchimp_accounts" in sent[1]
    [enrollment] = await harness.enrollments(lead)
    assert (enrollment["sequence_id"], enrollment["status"], enrollment["trigger_key"]) == (
        sequence["id"], "active", "created")
    async with harness.context.database.session() as session:
        [known] = (await session.execute(sa.select(leads).where(
            leads.c.org_id == harness.org, leads.c.lead_id == lead))).mappings().all()
    assert (known["email"], known["lead_version"], known["lock_version"]) == ("ada@example.com", 1, 0)


async def test_a_lead_update_is_two_statements(harness: Harness):
    lead = await harness.lead()
    update = LeadUpdatedV1(lead=snapshot(lead, "ada@new.example", first_name="Augusta"), changed_fields=["contact"])
    sent = await harness.statements_handling(harness.envelope(update, lead))
    # The inbox claim; the snapshot stored by the statement that also reads the lead's Mailchimp settings (none).
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "WITH stored_lead"], sent
    async with harness.context.database.session() as session:
        [known] = (await session.execute(sa.select(leads).where(
            leads.c.org_id == harness.org, leads.c.lead_id == lead))).mappings().all()
    assert (known["email"], known["first_name"], known["lead_version"], known["lock_version"]) == (
        "ada@new.example", "Augusta", 2, 1)


async def test_a_snapshot_stored_after_waiting_for_the_leads_lock_reads_what_the_holder_wrote(harness: Harness):
    """The snapshot's statement reads in the snapshot it began with, before it waited for the lock: what the
    transaction holding the lead wrote meanwhile is read again after the lock."""
    welcome = await harness.template("Welcome", "Hello")
    sequence = await harness.post("/v1/sequences", {"name": "nurture", "trigger": "lead_lost",
                                                    "steps": [{"template_id": welcome}]})
    lead = await harness.lead()
    now = harness.clock.now()
    enrollment = repository.Enrollment(
        id=str(uuid.uuid4()), org_id=harness.org, sequence_id=sequence["id"], lead_id=lead, trigger_key="lost@1",
        stage_id=None, status="active", stop_reason=None, next_step=0, next_due_at=now + timedelta(days=1),
        created_at=now, updated_at=now)
    values = {"email": "ada@new.example", "lead_version": 2, "updated_at": now}

    async def store() -> Any:
        async with harness.context.database.session() as session:
            return await repository.store_newer_snapshot_reading_follow_ups(session, harness.org, lead, values,
                                                                            None)

    async with harness.context.database.session() as holder:
        await repository.lock_lead(holder, harness.org, lead, now)  # another replica's transaction holds the lead
        storing = asyncio.create_task(statements_sent(harness.context.database, store))
        await asyncio.sleep(0.5)  # the snapshot's statement waits for the lock
        assert not storing.done()
        assert await repository.add_enrollment(holder, enrollment)  # ... and enrolls the lead meanwhile
        await holder.commit()
    (stored_lead, follow_ups), sent = await storing
    assert [running.id for running in follow_ups.sequences.running] == [enrollment.id]
    assert [what(s) for s in sent] == ["WITH stored_lead", "SELECT"], sent  # the follow-ups read again
    assert (stored_lead.email, stored_lead.lock_version) == ("ada@new.example", 2)  # LeadCreated's, the holder's
    # Nobody holding it, the statement's own read stands.
    (_, follow_ups), sent = await statements_sent(harness.context.database, lambda: store_again(harness, lead, now))
    assert [what(s) for s in sent] == ["WITH stored_lead"], sent
    assert [running.id for running in follow_ups.sequences.running] == [enrollment.id]


async def store_again(harness: Harness, lead: str, now: datetime) -> Any:
    async with harness.context.database.session() as session:
        return await repository.store_newer_snapshot_reading_follow_ups(
            session, harness.org, lead, {"email": "ada@third.example", "lead_version": 3, "updated_at": now}, None)
