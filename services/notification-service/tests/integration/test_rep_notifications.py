"""Rep notifications (assignment, task reminders, milestones) by email and signed webhook, each exactly once."""
from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from notification_testkit import Harness

from notification_service.entrypoints.http import create_app
from salesflow_shared.events import (
    LeadAssignedV1,
    LeadWonV1,
    QuotaReachedV1,
    StageAdvancedV1,
    TaskCompletedV1,
    TaskCreatedV1,
    TaskOverdueV1,
    TaskReassignedV1,
)
from salesflow_shared.signatures import SignatureError, verify
from salesflow_shared.testing import eventually, running_app

SECRET = "whsec-0123456789abcdef"


async def assign(harness: Harness, lead: str, rep: str = "rep-1", decision: str | None = None) -> None:
    await harness.handled(await harness.send(LeadAssignedV1(
        lead_id=lead, owner_id=rep, owner_name="Grace Hopper", owner_email=f"{rep}@sales.example",
        reason="round robin", decision_id=decision or f"d-{lead}"), lead))


def won(lead: str, value: str, at: datetime) -> LeadWonV1:
    return LeadWonV1(lead_id=lead, pipeline_id="pipe-1", value=value, currency="EUR", owner_id="rep-1", won_at=at)


async def test_milestone_rules_fire_once_by_email_and_signed_webhook(harness: Harness):
    hook_url = f"http://127.0.0.1:{harness.mailchimp.port}/hooks/chat"
    await harness.post("/v1/webhook-subscriptions", {"url": hook_url, "reasons": ["milestone"], "secret": SECRET})
    big = await harness.post("/v1/milestones", {"name": "Big deal won", "kind": "deal_won", "min_value": "10000",
                                                "currency": "EUR"})
    first = await harness.post("/v1/milestones", {"name": "First deal of the quarter",
                                                  "kind": "first_deal_of_quarter", "channels": ["email"]})
    meeting = await harness.post("/v1/milestones", {"name": "Big deal past the meeting",
                                                    "kind": "stage_exit_above_value", "stage_id": "meeting",
                                                    "min_value": "20000", "channels": ["webhook"]})
    lead1 = await harness.lead(value="15000")
    lead2 = await harness.lead(value="30000")
    for lead in (lead1, lead2):
        await assign(harness, lead)
    when = datetime(2026, 2, 10, tzinfo=UTC)

    win1 = harness.envelope(won(lead1, "15000", when), lead1)
    await harness.publish(win1)
    await harness.publish(win1)  # redelivered
    replay = harness.envelope(won(lead1, "15000", when), lead1, version=win1.subject_version)  # replayed, new id
    await harness.publish(replay)
    await harness.handled(win1, replay)
    # lead2 leaves the meeting stage with a big value, then is won in the same quarter
    await harness.handled(await harness.send(StageAdvancedV1(
        lead_id=lead2, pipeline_id="pipe-1", to_stage_id="meeting", to_stage_name="Meeting", to_stage_position=2,
        reason="manual", entered_at=when), lead2))
    for _ in range(2):
        await harness.handled(await harness.send(StageAdvancedV1(
            lead_id=lead2, pipeline_id="pipe-1", from_stage_id="meeting", to_stage_id="proposal",
            to_stage_name="Proposal", to_stage_position=3, reason="manual", entered_at=when), lead2))
    await harness.handled(await harness.send(won(lead2, "30000", when + timedelta(days=1)), lead2))
    await harness.settled()

    fired = sorted((d["rule_id"], d["lead_id"], d["kind"]) for d in await harness.deliveries(reason="milestone"))
    assert fired == sorted([
        (big["id"], lead1, "email"), (big["id"], lead1, "webhook"),
        (first["id"], lead1, "email"),  # the rep's first deal of 2026Q1 ...
        (meeting["id"], lead2, "webhook"),
        (big["id"], lead2, "email"), (big["id"], lead2, "webhook"),  # ... and not again for the second
    ])
    subjects = sorted(m["Subject"] for m in harness.smtp.to("rep-1@sales.example"))
    assert subjects.count("Congratulations: Big deal won") == 2
    assert subjects.count("Congratulations: First deal of the quarter") == 1

    assert len(harness.mailchimp.hooks) == 3
    for name, body, headers in harness.mailchimp.hooks:
        assert name == "chat"
        assert verify(headers["salesflow-signature"], body, [SECRET], now=time.time())
        with pytest.raises(SignatureError, match="does not match"):
            verify(headers["salesflow-signature"], body, ["another-secret-xxxxxxxx"], now=time.time())
    bodies = [json.loads(b) for _, b, _ in harness.mailchimp.hooks]
    assert {b["milestone"]["name"] for b in bodies} == {"Big deal won", "Big deal past the meeting"}
    notified = [(e["data"]["channel"], e["data"]["reason"]) for e in await harness.published("RepNotified")]
    assert sorted(notified) == sorted([("email", "lead_assigned")] * 2 + [("email", "milestone")] * 3
                                      + [("webhook", "milestone")] * 3)


async def test_webhook_failures_are_retried_with_backoff(harness: Harness):
    hook_url = f"http://127.0.0.1:{harness.mailchimp.port}/hooks/chat"
    await harness.post("/v1/webhook-subscriptions", {"url": hook_url, "reasons": ["lead_assigned"],
                                                     "rep_id": "rep-1", "secret": SECRET})
    harness.mailchimp.hook_fail_with = [503]
    lead = await harness.lead()
    await assign(harness, lead)
    await harness.settled()
    [hook] = await harness.deliveries(kind="webhook")
    assert hook["status"] == "pending" and hook["error"] == "HTTP 503" and hook["attempts"] == 1
    assert harness.mailchimp.hooks == []
    harness.clock.advance(seconds=harness.settings.delivery_retry_base_s + 1)
    await harness.settled()
    [hook] = await harness.deliveries(kind="webhook")
    assert hook["status"] == "sent" and hook["attempts"] == 2
    assert len(harness.mailchimp.hooks) == 1
    other = await harness.lead()
    await assign(harness, other, rep="rep-2")  # subscription is for rep-1 only
    await harness.settled()
    assert len(await harness.deliveries(kind="webhook")) == 1


async def test_task_reminders_due_soon_overdue_and_cancelled(harness: Harness):
    lead = await harness.lead()
    await assign(harness, lead)
    now = harness.clock.now()
    for task_id, due in (("t-due", now + timedelta(hours=3)), ("t-done", now + timedelta(hours=3))):
        await harness.handled(await harness.send(TaskCreatedV1(task_id=task_id, lead_id=lead, title=f"Call {task_id}",
                                                               due_at=due, assignee_id="rep-1"), task_id))
    await harness.handled(await harness.send(TaskCompletedV1(task_id="t-done", lead_id=lead, assignee_id="rep-1",
                                                             completed_at=now), "t-done"))
    await harness.handled(await harness.send(TaskOverdueV1(task_id="t-late", lead_id=lead, title="Send quote",
                                                           assignee_id="rep-1", due_at=now), "t-late"))
    await harness.settled()
    subjects = lambda: sorted(m["Subject"] for m in harness.smtp.to("rep-1@sales.example"))  # noqa: E731
    assert "Task overdue: Send quote" in subjects()
    assert not any(s.startswith("Task due soon") for s in subjects())
    harness.clock.advance(hours=2, minutes=1)  # one hour before the due time

    async def reminded():
        assert subjects().count("Task due soon: Call t-due") == 1
    await eventually(reminded)
    await harness.settled()
    assert not any("t-done" in s for s in subjects())
    statuses = {d["idem_key"].split(":")[1]: d["status"] for d in await harness.deliveries()
                if d["reason"].startswith("task")}
    assert statuses == {"t-due": "sent", "t-done": "cancelled", "t-late": "sent"}


async def test_duplicate_events_and_two_replicas_send_nothing_twice(harness: Harness):
    template = await harness.template("Welcome", "Welcome {{ lead.first_name }}")
    await harness.post("/v1/sequences", {"name": "welcome", "trigger": "stage_entry", "stage_id": "new",
                                         "steps": [{"template_id": template}]})
    replica = create_app(harness.settings, clock=harness.clock)  # same database, same queue, same broker
    async with running_app(replica):
        leads = [await harness.lead(email=f"p{i}@prospect.example") for i in range(15)]
        sent = []
        for lead in leads:
            envelope = harness.envelope(StageAdvancedV1(
                lead_id=lead, pipeline_id="pipe-1", to_stage_id="new", to_stage_name="New", to_stage_position=1,
                reason="entry", entered_at=harness.clock.now()), lead)
            for _ in range(2):
                sent.append(await harness.publish(envelope))
            sent.append(await harness.publish(harness.envelope(StageAdvancedV1(  # same transition, new event id
                lead_id=lead, pipeline_id="pipe-1", to_stage_id="new", to_stage_name="New", to_stage_position=1,
                reason="entry", entered_at=harness.clock.now()), lead, version=envelope.subject_version)))
        await assign(harness, leads[0], decision="d-once")
        await harness.publish(harness.envelope(LeadAssignedV1(
            lead_id=leads[0], owner_id="rep-1", owner_name="Grace Hopper", owner_email="rep-1@sales.example",
            reason="replayed", decision_id="d-once"), leads[0]))
        await harness.handled(*sent)
        await harness.settled()
    prospect_mails = [m for m in harness.smtp.messages if "prospect.example" in str(m["To"])]
    assert len(prospect_mails) == 15
    assert len({m["Message-ID"] for m in prospect_mails}) == 15
    assert len(harness.smtp.to("rep-1@sales.example")) == 1
    emails_sent = await harness.published("EmailSent")
    assert len(emails_sent) == 16 and harness.org == emails_sent[0]["org_id"]


def quota_reached(quota_id: str, scope: str = "rep", scope_id: str = "rep-1") -> QuotaReachedV1:
    return QuotaReachedV1(quota_id=quota_id, scope=scope, scope_id=scope_id, period="quarter",
                          period_start=date(2026, 1, 1), amount=Decimal("1000"), currency="EUR",
                          attained=Decimal("1100.00"), attainment_pct=110.0,
                          reached_at=datetime(2026, 2, 10, tzinfo=UTC))


async def test_quota_reached_congratulates_the_rep_once_by_email_and_webhook(harness: Harness):
    hook_url = f"http://127.0.0.1:{harness.mailchimp.port}/hooks/chat"
    await harness.post("/v1/webhook-subscriptions", {"url": hook_url, "reasons": ["milestone"], "secret": SECRET})
    rule = await harness.post("/v1/milestones", {"name": "Quota reached", "kind": "quota_reached"})
    await harness.post("/v1/milestones", {"name": "Big quota reached", "kind": "quota_reached",
                                          "min_value": "5000"})  # this quota is smaller: does not fire
    await harness.post("/v1/milestones", {"name": "Deal won", "kind": "deal_won"})  # not about quotas
    lead = await harness.lead()
    await assign(harness, lead)  # how notification-service learns rep-1's address

    reached = harness.envelope(quota_reached("quota-1"), "quota-1")
    await harness.publish(reached)
    await harness.publish(reached)  # redelivered
    replay = harness.envelope(quota_reached("quota-1"), "quota-1", version=reached.subject_version)  # new id
    await harness.publish(replay)
    team = await harness.send(quota_reached("quota-2", scope="team", scope_id="team-1"), "quota-2")
    await harness.handled(reached, replay, team)
    await harness.settled()

    fired = [(d["rule_id"], d["kind"], d["status"], d["lead_id"])
             for d in await harness.deliveries(reason="milestone")]
    assert sorted(fired) == [(rule["id"], "email", "sent", None), (rule["id"], "webhook", "sent", None)]
    # rep-1 also got the new-lead email, sent by another worker: the two may arrive in either order
    to_rep = harness.smtp.to("rep-1@sales.example")
    assert len(to_rep) == 2
    [mail] = [m for m in to_rep if m["Subject"].startswith("Congratulations")]
    assert mail["Subject"] == "Congratulations: Quota reached"
    assert "110.0% of your quarter quota: 1100.00 of 1000 EUR" in mail.get_body(("plain",)).get_content()
    [(name, body, headers)] = harness.mailchimp.hooks
    assert verify(headers["salesflow-signature"], body, [SECRET], now=time.time())
    payload = json.loads(body)
    assert payload["rep_id"] == "rep-1" and payload["milestone"]["kind"] == "quota_reached"
    assert payload["milestone"]["quota"]["attainment_pct"] == 110.0
    notified = [(e["data"]["channel"], e["data"]["milestone_rule_id"]) for e in await harness.published("RepNotified")
                if e["data"]["reason"] == "milestone"]
    assert sorted(notified) == [("email", rule["id"]), ("webhook", rule["id"])]


async def test_a_reassigned_task_tells_the_new_assignee_once_and_moves_its_reminder(harness: Harness):
    lead = await harness.lead()
    await assign(harness, lead)  # rep-1 owns the lead
    await assign(harness, await harness.lead(), rep="rep-2")  # how notification-service learns rep-2's address
    await assign(harness, await harness.lead(), rep="rep-3")
    now = harness.clock.now()
    due = now + timedelta(hours=3)
    for task_id in ("t-manual", "t-owner"):
        await harness.handled(await harness.send(TaskCreatedV1(task_id=task_id, lead_id=lead, title=f"Call {task_id}",
                                                               due_at=due, assignee_id="rep-1"), task_id))

    def reassigned(task_id: str, to: str, reason: str) -> TaskReassignedV1:
        return TaskReassignedV1(task_id=task_id, lead_id=lead, title=f"Call {task_id}", due_at=due,
                                previous_assignee_id="rep-1", assignee_id=to, reason=reason, reassigned_by="mgr")
    by_hand = harness.envelope(reassigned("t-manual", "rep-2", "manual"), "t-manual")
    await harness.publish(by_hand)
    await harness.publish(by_hand)  # redelivered
    replay = harness.envelope(reassigned("t-manual", "rep-2", "manual"), "t-manual", version=by_hand.subject_version)
    await harness.publish(replay)  # replayed under a new event id
    followed = await harness.send(reassigned("t-owner", "rep-3", "owner_changed"), "t-owner")
    late = harness.envelope(TaskCreatedV1(task_id="t-manual", lead_id=lead, title="Call t-manual", due_at=due,
                                          assignee_id="rep-1"), "t-manual", version=1)  # the creation, again, late
    await harness.publish(late)
    await harness.handled(by_hand, replay, followed, late)
    await harness.settled()

    subjects = lambda rep: sorted(m["Subject"] for m in harness.smtp.to(f"{rep}@sales.example"))  # noqa: E731
    assert subjects("rep-2").count("Task assigned to you: Call t-manual") == 1
    assert not any(s.startswith("Task assigned") for s in subjects("rep-3"))  # owner change: lead_assigned said it
    harness.clock.advance(hours=2, minutes=1)  # one hour before the due time

    async def reminded():
        assert subjects("rep-2").count("Task due soon: Call t-manual") == 1
        assert subjects("rep-3").count("Task due soon: Call t-owner") == 1
    await eventually(reminded)
    await harness.settled()
    assert not any(s.startswith("Task due soon") for s in subjects("rep-1"))
    reminders = {(d["rep_id"], d["status"]) for d in await harness.deliveries(reason="task_due")}
    assert reminders == {("rep-1", "cancelled"), ("rep-2", "sent"), ("rep-3", "sent")}
    assert len(await harness.deliveries(reason="task_due", status="sent")) == 2
