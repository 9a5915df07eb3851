"""Sequences end to end: events through RabbitMQ, a real SMTP server, a clock the test moves."""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from notification_testkit import Harness
from salesflow_shared.events import LeadAssignedV1, StageAdvancedV1
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
