"""The statements a delivery costs on the paths every inbound lead takes (issue 21: at most three per delivery on
the hot paths). Each test hands the deliveries to the dispatcher as the bus hands a batch over and lists what that
batch sent, statement by statement (the inbox claim included; BEGIN and COMMIT are not statements); the counts are
read off the handlers."""
from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from notification_testkit import Harness

from notification_service.adapters import repository
from notification_service.adapters.orm import deliveries, enrollments, mailchimp_members, reps
from notification_service.service_layer.deliveries import new_delivery
from salesflow_shared.events import (
    LeadAssignedV1,
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


async def test_a_first_assignment_to_a_rep_in_the_directory_is_four_statements_and_keeps_no_copy_of_the_rep(
        harness: Harness):
    await in_directory(harness, "nia")
    lead = await harness.lead()
    sent = await harness.statements_handling(harness.envelope(assigned(lead, "nia"), lead))
    # The inbox claim; the lead's owner written by the statement that locks it (which says the owner's directory
    # entry is held, so what the assignment says of the owner is not written); the rep notice (rep, lead, template,
    # webhooks); the email's delivery.
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "INSERT INTO leads", "SELECT",
                                       "INSERT INTO deliveries"], sent
    [email] = await harness.deliveries(lead_id=lead, reason="lead_assigned")
    assert email["recipient"] == "nia@sales.example"  # the directory's address, not the assignment's
    assert email["rep_id"] == "nia" and email["status"] == "pending"


async def test_a_first_assignment_to_a_rep_not_in_the_directory_keeps_what_it_says_of_the_rep(harness: Harness):
    lead = await harness.lead()
    sent = await harness.statements_handling(harness.envelope(assigned(lead, "newbie"), lead))
    # As above, with the rep's copy from the assignment written (kept until the directory's entry arrives).
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "INSERT INTO leads", "INSERT INTO reps", "SELECT",
                                       "INSERT INTO deliveries"], sent
    async with harness.context.database.session() as session:
        [rep] = (await session.execute(sa.select(reps.c.name, reps.c.email, reps.c.version).where(
            reps.c.org_id == harness.org, reps.c.rep_id == "newbie"))).all()
    assert tuple(rep) == ("Told By Assignment", "newbie@assignment.example", 0)
    [email] = await harness.deliveries(lead_id=lead, reason="lead_assigned")
    assert email["recipient"] == "newbie@assignment.example"


async def test_a_stage_entry_that_puts_the_lead_on_a_list_is_five_statements(harness: Harness):
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
    # The inbox claim; the lead locked (with whether the pipeline's definition is held) and its stage and owner
    # written; its sequences and Mailchimp settings read together; the list call's delivery added by the statement
    # that also remembers the lead as the list's member (PostgreSQL: a data-modifying CTE).
    assert [what(s) for s in sent] == ["INSERT INTO inbox", "INSERT INTO leads", "UPDATE leads", "SELECT",
                                       "WITH remembered_member"], sent
    assert "INSERT INTO mailchimp_members" in sent[-1] and "INSERT INTO deliveries" in sent[-1]
    [call] = await harness.deliveries(lead_id=lead, kind="mailchimp")
    assert call["recipient"] == "mailchimp:L1" and call["status"] == "pending" and call["rep_id"] == "nia"
    async with harness.context.database.session() as session:
        [member] = (await session.execute(sa.select(mailchimp_members).where(
            mailchimp_members.c.org_id == harness.org, mailchimp_members.c.lead_id == lead))).mappings().all()
    assert (member["list_id"], member["subscribed"], member["tags"]) == ("L1", True, ["qualified"])
    assert member["subscriber_hash"] == call["payload"]["ops"][0]["hash"]


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
