"""Sequences, deliveries and milestones through the service layer alone: the embedded SQLite database and the
in-process bus (no PostgreSQL, no RabbitMQ, no HTTP), events handed to the handlers and the two workers' ticks
run by the test on a clock it moves; email goes to a real local SMTP server (SmtpSink).

What is asserted is what a prospect or a rep sees (the emails that arrive, when) and what the rest of Salesflow
hears (EmailSent / EmailFailed / RepNotified).
"""
from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from notification_service.adapters import repository
from notification_service.adapters.orm import deliveries, enrollments, mailchimp_members, reps, task_assignees
from notification_service.service_layer.deliveries import DeliveryWorker, Outcome, new_delivery
from notification_service.service_layer.handlers import unsubscribe_lead
from notification_service.service_layer.sequences import SequenceScheduler
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    ContactData,
    EventData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadSnapshot,
    LeadWonV1,
    RepCreatedV1,
    RepSnapshot,
    StageAdvancedV1,
    TaskCreatedV1,
    TaskReassignedV1,
    make_event,
)
from salesflow_shared.testing import EmbeddedService, SmtpSink

MONDAY_10AM = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # 05:00 in New York (EST, UTC-5)
ORG = "org-a"


@dataclass
class Notifications:
    service: EmbeddedService
    smtp: SmtpSink
    scheduler: SequenceScheduler
    sender: DeliveryWorker

    @property
    def clock(self) -> ManualClock:
        return self.service.clock  # type: ignore[no-any-return]

    async def tell(self, data: EventData, subject_id: str, version: int = 1) -> Any:
        envelope = make_event(data, org_id=ORG, subject_id=subject_id, subject_version=version)
        return await self.service.dispatch(envelope)

    async def work(self) -> None:
        """What the workers do at this moment: record the due sequence steps, then attempt the due deliveries."""
        while await self.scheduler.run_once() or await self.sender.run_once():
            pass

    def subjects(self, address: str) -> list[str]:
        return [m["Subject"] for m in self.smtp.to(address)]

    async def rows(self, table: sa.Table, **where: Any) -> list[dict[str, Any]]:
        async with self.service.session() as session:
            query = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
            return [dict(r) for r in (await session.execute(query.order_by(table.c.created_at))).mappings()]

    async def published(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in await self.service.outbox(event_type)]

    # ---------------------------------------------------------- what an admin set up
    async def template(self, subject: str, key: str | None = None) -> str:
        now = self.clock.now()
        template = repository.Template(
            id=str(uuid.uuid4()), org_id=ORG, name=subject, key=key, audience="prospect" if key is None else "rep",
            subject=subject, html_body=f"<p>{subject}</p>", text_body=f"{subject}\n", version=1, created_at=now,
            updated_at=now)
        async with self.service.uow() as uow:
            await repository.add_template(uow.session, template)
            await uow.commit()
        return template.id

    async def sequence(self, stage_id: str, steps: list[dict[str, Any]]) -> str:
        now = self.clock.now()
        sequence = repository.SequenceRecord(
            id=str(uuid.uuid4()), org_id=ORG, name=f"on {stage_id}", trigger="stage_entry", pipeline_id=None,
            stage_id=stage_id, source=None, steps=steps, business_timezone=None, active=True, created_at=now,
            updated_at=now)
        async with self.service.uow() as uow:
            await repository.add_sequence(uow.session, sequence)
            await uow.commit()
        return sequence.id


@pytest.fixture
def notifications(embedded: EmbeddedService, smtp_sink: SmtpSink) -> Notifications:
    return Notifications(embedded, smtp_sink, SequenceScheduler(embedded.context), DeliveryWorker(embedded.context))


def a_lead(lead_id: str, email: str, timezone: str | None = None) -> LeadCreatedV1:
    return LeadCreatedV1(lead=LeadSnapshot(lead_id=lead_id, timezone=timezone, value=Decimal("25000"),
                                           currency="EUR", owner_id="rep-1",
                                           contact=ContactData(first_name="Ada", last_name="Lovelace", email=email)))


def entered(lead_id: str, stage_id: str, at: datetime) -> StageAdvancedV1:
    return StageAdvancedV1(lead_id=lead_id, pipeline_id="pipe-1", to_stage_id=stage_id, to_stage_name=stage_id.title(),
                           to_stage_position=1, reason="entry", entered_at=at)


# ------------------------------------------------------------------ sequences on the clock
async def test_a_sequence_sends_each_step_when_it_falls_due(notifications: Notifications):
    n = notifications
    welcome, follow_up, call_me = [await n.template(s) for s in ("Welcome", "Follow-up", "Shall we talk?")]
    await n.sequence("qualified", [
        {"template_id": welcome},
        {"template_id": follow_up, "delay_minutes": 24 * 60},
        {"template_id": call_me, "delay_minutes": 0, "business_hours": True},  # in the lead's business hours
    ])
    await n.tell(a_lead("lead-1", "ada@prospect.example", timezone="America/New_York"), "lead-1")
    await n.tell(entered("lead-1", "qualified", n.clock.now()), "lead-1")

    await n.work()
    assert n.subjects("ada@prospect.example") == ["Welcome"]
    n.clock.advance(hours=23, minutes=59)
    await n.work()
    assert n.subjects("ada@prospect.example") == ["Welcome"]
    n.clock.advance(minutes=1)  # Tuesday 10:00 UTC: one day after the first step
    await n.work()
    assert n.subjects("ada@prospect.example") == ["Welcome", "Follow-up"]
    # Tuesday 10:00 UTC is 05:00 in New York: the last step waits for 09:00 there (14:00 UTC).
    n.clock.set(datetime(2026, 1, 6, 13, 59, tzinfo=UTC))
    await n.work()
    assert len(n.smtp.to("ada@prospect.example")) == 2
    n.clock.set(datetime(2026, 1, 6, 14, 0, tzinfo=UTC))
    await n.work()
    assert n.subjects("ada@prospect.example") == ["Welcome", "Follow-up", "Shall we talk?"]

    [enrollment] = await n.rows(enrollments, lead_id="lead-1")
    assert enrollment["status"] == "completed" and enrollment["next_step"] == 3
    sent = await n.published("EmailSent")
    assert [(e["step"], e["sent_at"]) for e in sent] == [
        (0, "2026-01-05T10:00:00Z"), (1, "2026-01-06T10:00:00Z"), (2, "2026-01-06T14:00:00Z")]


async def test_a_step_that_crashes_is_put_off_and_does_not_hold_up_the_others(notifications: Notifications):
    n = notifications
    await n.sequence("qualified", [{"template_id": await n.template("Welcome")}])
    for lead_id, email in (("lead-1", "ada@prospect.example"), ("lead-2", "bob@prospect.example")):
        await n.tell(a_lead(lead_id, email), lead_id)
        await n.tell(entered(lead_id, "qualified", n.clock.now()), lead_id)
    async with n.service.uow() as uow:  # lead-1's enrollment points past the sequence's last step: a bug
        await uow.session.execute(sa.update(enrollments).where(enrollments.c.lead_id == "lead-1")
                                  .values(next_step=7))
        await uow.commit()

    await n.work()

    assert n.subjects("bob@prospect.example") == ["Welcome"]
    assert n.subjects("ada@prospect.example") == []
    [broken] = await n.rows(enrollments, lead_id="lead-1")
    assert (broken["status"], broken["next_step"]) == ("active", 7)
    assert broken["next_due_at"].replace(tzinfo=UTC) == MONDAY_10AM + timedelta(minutes=5)  # looked at again then
    [done] = await n.rows(enrollments, lead_id="lead-2")
    assert (done["status"], done["next_step"]) == ("completed", 1)
    assert len(await n.published("EmailSent")) == 1


async def test_a_batch_whose_steps_cannot_be_written_together_is_written_step_by_step(
        notifications: Notifications, monkeypatch: pytest.MonkeyPatch):
    n = notifications
    await n.sequence("qualified", [{"template_id": await n.template("Welcome")}])
    for lead_id, email in (("lead-1", "ada@prospect.example"), ("lead-2", "bob@prospect.example")):
        await n.tell(a_lead(lead_id, email), lead_id)
        await n.tell(entered(lead_id, "qualified", n.clock.now()), lead_id)
    batches: list[int] = []
    add_deliveries = repository.add_deliveries

    async def fails_for_two(session: Any, rows: Any) -> None:  # a batch's writes together fail (once)
        batches.append(len(rows))
        if len(rows) == 2:
            raise RuntimeError("the batch's writes fail")
        await add_deliveries(session, rows)

    monkeypatch.setattr(repository, "add_deliveries", fails_for_two)

    await n.work()

    assert batches == [2, 1, 1, 0]  # the batch, then each step on its own (and the batch's end, with nothing left)
    assert n.subjects("ada@prospect.example") == ["Welcome"] and n.subjects("bob@prospect.example") == ["Welcome"]
    for lead_id in ("lead-1", "lead-2"):
        [enrollment] = await n.rows(enrollments, lead_id=lead_id)
        assert (enrollment["status"], enrollment["next_step"]) == ("completed", 1)
    assert len(await n.published("EmailSent")) == 2


async def test_a_lead_locked_again_by_its_transaction_is_its_row_as_that_transaction_left_it(
        notifications: Notifications):
    n = notifications
    await n.tell(a_lead("lead-1", "ada@prospect.example"), "lead-1")
    now = n.clock.now()
    async with n.service.uow() as uow:
        first = await repository.lock_lead(uow.session, ORG, "lead-1", now)
        written = await repository.update_lead(uow.session, ORG, "lead-1", {"stage_name": "Demo", "updated_at": now})
        assert await repository.lock_lead(uow.session, ORG, "lead-1", now) == written != first
        await uow.rollback()  # a new transaction reads the row again: as it is, not as the undone one left it
        assert await repository.lock_lead(uow.session, ORG, "lead-1", now) == first


async def test_a_stage_entry_told_twice_sends_one_email(notifications: Notifications):
    n = notifications
    await n.sequence("qualified", [{"template_id": await n.template("Welcome")}])
    await n.tell(a_lead("lead-1", "ada@prospect.example"), "lead-1")
    stage = make_event(entered("lead-1", "qualified", n.clock.now()), org_id=ORG, subject_id="lead-1",
                       subject_version=1)

    await n.service.dispatch(stage)
    await n.service.dispatch(stage)  # redelivered
    await n.tell(entered("lead-1", "qualified", n.clock.now()), "lead-1", version=1)  # replayed, new event id
    await n.work()
    n.clock.advance(days=3)
    await n.work()

    assert n.subjects("ada@prospect.example") == ["Welcome"]
    assert len(await n.rows(enrollments, lead_id="lead-1")) == 1
    assert len(await n.published("EmailSent")) == 1


async def test_an_email_the_relay_defers_waits_and_is_sent_on_a_later_attempt(notifications: Notifications):
    n = notifications
    await n.sequence("qualified", [{"template_id": await n.template("Welcome")}])
    await n.tell(a_lead("lead-1", "ada@prospect.example"), "lead-1")
    await n.tell(entered("lead-1", "qualified", n.clock.now()), "lead-1")
    n.smtp.fail_next = 2  # "451 try again later", twice

    await n.work()
    [row] = await n.rows(deliveries, lead_id="lead-1")
    assert (row["status"], row["attempts"]) == ("pending", 1) and row["error"].startswith("SMTP 451")
    # Retried after delivery_retry_base_s (60 s), then twice that: not before.
    assert row["next_attempt_at"].replace(tzinfo=UTC) == MONDAY_10AM + timedelta(seconds=60)
    n.clock.advance(seconds=59)
    await n.work()
    assert (await n.rows(deliveries, lead_id="lead-1"))[0]["attempts"] == 1
    n.clock.advance(seconds=1)
    await n.work()
    [row] = await n.rows(deliveries, lead_id="lead-1")
    assert (row["status"], row["attempts"]) == ("pending", 2)
    assert row["next_attempt_at"].replace(tzinfo=UTC) == n.clock.now() + timedelta(seconds=120)
    n.clock.advance(seconds=120)
    await n.work()

    [row] = await n.rows(deliveries, lead_id="lead-1")
    assert (row["status"], row["attempts"]) == ("sent", 3)
    assert n.subjects("ada@prospect.example") == ["Welcome"]
    assert n.smtp.to("ada@prospect.example")[0]["Message-ID"] == row["message_id"]  # the same message each time
    assert len(await n.published("EmailSent")) == 1 and await n.published("EmailFailed") == []


async def test_unsubscribing_stops_the_sequence(notifications: Notifications):
    n = notifications
    first, second = await n.template("Welcome"), await n.template("Follow-up")
    await n.sequence("qualified", [{"template_id": first}, {"template_id": second, "delay_minutes": 60}])
    await n.tell(a_lead("lead-1", "ada@prospect.example"), "lead-1")
    await n.tell(entered("lead-1", "qualified", n.clock.now()), "lead-1")
    await n.work()

    async with n.service.uow() as uow:
        assert await unsubscribe_lead(uow, org_id=ORG, lead_id="lead-1", now=n.clock.now())
        await uow.commit()
    async with n.service.uow() as uow:  # the link clicked again
        assert not await unsubscribe_lead(uow, org_id=ORG, lead_id="lead-1", now=n.clock.now())
    n.clock.advance(days=1)
    await n.work()
    await n.tell(entered("lead-1", "qualified", n.clock.now()), "lead-1", version=2)  # no new enrollment either
    await n.work()

    assert n.subjects("ada@prospect.example") == ["Welcome"]
    assert [(e["status"], e["stop_reason"]) for e in await n.rows(enrollments, lead_id="lead-1")] == [
        ("stopped", "unsubscribed")]


# ------------------------------------------------------------------ rep milestones
async def test_a_won_deal_above_the_milestone_congratulates_its_rep_once(notifications: Notifications):
    n = notifications
    async with n.service.uow() as uow:
        await repository.add_milestone_rule(uow.session, repository.MilestoneRuleRecord(
            id="big-win", org_id=ORG, name="A deal of 20k or more", kind="deal_won", stage_id=None,
            min_value=Decimal("20000"), currency="EUR", channels=["email"], active=True, created_at=n.clock.now()))
        await uow.commit()
    await n.tell(RepCreatedV1(rep=RepSnapshot(rep_id="rep-1", name="Grace Hopper", email="grace@sales.example")),
                 "rep-1")
    await n.tell(a_lead("lead-big", "big@prospect.example"), "lead-big")
    await n.tell(a_lead("lead-small", "small@prospect.example"), "lead-small")

    def won(lead_id: str, value: str) -> LeadWonV1:
        return LeadWonV1(lead_id=lead_id, pipeline_id="pipe-1", value=Decimal(value), currency="EUR",
                         owner_id="rep-1", won_at=n.clock.now())

    won_big = await n.tell(won("lead-big", "25000"), "lead-big")
    await n.service.dispatch(won_big)  # redelivered
    await n.tell(won("lead-big", "25000"), "lead-big")  # replayed under a new event id
    await n.tell(won("lead-small", "19999.99"), "lead-small")
    await n.work()

    assert n.subjects("grace@sales.example") == ["Congratulations: A deal of 20k or more"]
    notified = await n.published("RepNotified")
    assert [(e["rep_id"], e["lead_id"], e["reason"], e["milestone_rule_id"]) for e in notified] == [
        ("rep-1", "lead-big", "milestone", "big-win")]


async def test_on_sqlite_an_assignment_a_reminder_and_a_list_subscription_each_write_what_they_did_before(
        notifications: Notifications):
    """The paths PostgreSQL runs in fewer statements (a first assignment to a rep in the directory, a task's
    reminder with its assignee, a list subscription with its member) run as separate statements here: the same
    rows."""
    n = notifications
    now = n.clock.now()
    async with n.service.uow() as uow:
        await repository.save_mailchimp_account(uow.session, repository.MailchimpAccount(
            org_id=ORG, api_key="0123456789abcdef-us6", nurture_list_id=None, nurture_tag=None, updated_at=now),
            exists=False)
        await repository.add_mailchimp_rule(uow.session, repository.MailchimpRule(
            id="rule-1", org_id=ORG, pipeline_id=None, trigger="stage_entry", stage_id="qualified",
            action="subscribe", list_id="L1", tags=["qualified"], merge_fields={}, status_if_new="subscribed",
            created_at=now))
        await uow.commit()
    await n.tell(RepCreatedV1(rep=RepSnapshot(rep_id="rep-1", name="Grace Hopper", email="grace@sales.example")),
                 "rep-1")
    await n.tell(a_lead("lead-1", "ada@prospect.example"), "lead-1")
    await n.tell(LeadAssignedV1(lead_id="lead-1", owner_id="rep-1", owner_name="Told By Assignment",
                                owner_email="rep-1@assignment.example", reason="round robin", decision_id="d-1"),
                 "lead-1")
    await n.tell(entered("lead-1", "qualified", now), "lead-1")
    due = now + timedelta(days=2)
    await n.tell(TaskCreatedV1(task_id="task-1", lead_id="lead-1", title="Call back", task_type="call", due_at=due,
                               assignee_id="rep-1"), "task-1")
    await n.tell(TaskReassignedV1(task_id="task-2", lead_id="lead-1", title="Send deck", due_at=due,
                                  assignee_id="rep-1", previous_assignee_id="rep-2", reason="owner_changed"),
                 "task-2", version=2)
    await n.tell(TaskCreatedV1(task_id="task-2", lead_id="lead-1", title="Send deck", task_type="email", due_at=due,
                               assignee_id="rep-2"), "task-2")  # late: the reassignment was told first

    assigned = await n.rows(deliveries, reason="lead_assigned")
    assert [d["recipient"] for d in assigned] == ["grace@sales.example"]
    reminders = await n.rows(deliveries, reason="task_due")
    assert sorted((d["idem_key"], d["recipient"]) for d in reminders) == [
        ("task_due:task-1:email", "grace@sales.example"), ("task_due:task-2:v2:email", "grace@sales.example")]
    async with n.service.session() as session:
        assignees = dict((await session.execute(sa.select(task_assignees.c.task_id, task_assignees.c.version))).all())
        members = (await session.execute(sa.select(mailchimp_members))).mappings().all()
        grace = (await session.execute(sa.select(reps.c.email, reps.c.version))).one()
    assert tuple(grace) == ("grace@sales.example", 1)  # the directory's entry, not what the assignment said
    assert assignees == {"task-1": 1, "task-2": 2}
    assert [(m["lead_id"], m["list_id"], m["subscribed"], m["tags"]) for m in members] == [
        ("lead-1", "L1", True, ["qualified"])]
    [call] = await n.rows(deliveries, kind="mailchimp")
    assert call["recipient"] == "mailchimp:L1" and call["payload"]["ops"][0]["hash"] == members[0]["subscriber_hash"]


async def test_on_sqlite_a_sent_mark_publishes_the_events_of_the_attempts_it_records_and_no_others(
        notifications: Notifications):
    """PostgreSQL writes a sent mark's events by the mark's statement; here they are inserted after it, for the
    deliveries it marked: an attempt overtaken (its lease ran out and a second attempt claimed the row) publishes
    nothing."""
    n = notifications
    now = n.clock.now()

    async def claimed(lead_id: str, attempts: int) -> repository.Delivery:
        email = dataclasses.replace(new_delivery(
            org_id=ORG, idem_key=f"lead_assigned:{lead_id}:rep-1:email", kind="email", recipient_kind="rep",
            reason="lead_assigned", now=now, lead_id=lead_id, rep_id="rep-1", recipient="grace@sales.example",
            payload={"to": "grace@sales.example"}), status="sending", attempts=attempts,
            next_attempt_at=now + timedelta(days=1))
        async with n.service.uow() as uow:
            assert await repository.add_delivery(uow.session, email)
            await uow.commit()
        return email

    current, second_attempt = await claimed("lead-1", attempts=1), await claimed("lead-2", attempts=2)
    await n.sender._record_once([(current, Outcome(ok=True)),
                                 (dataclasses.replace(second_attempt, attempts=1), Outcome(ok=True))])
    assert [d["status"] for d in await n.rows(deliveries, lead_id="lead-1")] == ["sent"]
    assert [(d["status"], d["attempts"]) for d in await n.rows(deliveries, lead_id="lead-2")] == [("sending", 2)]
    assert [e["delivery_id"] for e in await n.published("EmailSent")] == [current.id]
    assert [e["delivery_id"] for e in await n.published("RepNotified")] == [current.id]
