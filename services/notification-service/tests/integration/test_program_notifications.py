"""Incentive programs' notifications: program started, milestone reached, badge earned, program won — a quick,
specific email and a signed webhook to the participant, each exactly once however often the event comes."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

from notification_testkit import Harness

from salesflow_shared.events import (
    BadgeEarnedV1,
    LeadAssignedV1,
    ProgramMilestoneReachedV1,
    ProgramStartedV1,
    ProgramWonV1,
)
from salesflow_shared.signatures import verify

SECRET = "whsec-0123456789abcdef"
WHEN = datetime(2026, 3, 9, 10, tzinfo=UTC)


async def test_each_program_achievement_is_told_once_by_email_and_signed_webhook(harness: Harness):
    hook_url = f"http://127.0.0.1:{harness.mailchimp.port}/hooks/contest"
    await harness.post("/v1/webhook-subscriptions", {
        "url": hook_url, "secret": SECRET,
        "reasons": ["program_started", "program_milestone", "badge_earned", "program_won"]})
    for rep in ("rep-1", "rep-2"):  # how notification-service learns the reps' addresses
        lead = await harness.lead()
        await harness.handled(await harness.send(LeadAssignedV1(
            lead_id=lead, owner_id=rep, owner_name=rep.title(), owner_email=f"{rep}@sales.example",
            reason="round robin", decision_id=f"d-{lead}"), lead))
    await harness.settled()
    harness.smtp.messages.clear()
    harness.mailchimp.hooks.clear()

    started = harness.envelope(ProgramStartedV1(
        program_id="prog-1", program_name="March race", format="race", starts_at=datetime(2026, 3, 1, tzinfo=UTC),
        ends_at=datetime(2026, 4, 1, tzinfo=UTC), participants=["rep-1", "rep-2"], target=100,
        rules_summary="call (connected, >= 2 min) 3 pts; meeting 10 pts"), "prog-1")
    milestone = harness.envelope(ProgramMilestoneReachedV1(
        program_id="prog-1", program_name="March race", rep_id="rep-1", milestone_id="silver",
        milestone_name="Silver", milestone_points=100, points=104, reached_at=WHEN,
        next_milestone="Gold at 200 points (96 to go)", badge="silver", cash=Decimal("50"), currency="EUR"),
        "prog-1")
    badge = harness.envelope(BadgeEarnedV1(
        program_id="prog-1", program_name="March race", rep_id="rep-2", badge_id="call-streak-5",
        badge_name="Five days in a row on the phone", earned_at=WHEN, earned_by="activity:a-9"), "prog-1")
    won = harness.envelope(ProgramWonV1(
        program_id="prog-1", program_name="March race", rep_id="rep-1", place=1, points=130, badge="race-winner",
        cash=Decimal("500.00"), currency="EUR", ended_at=datetime(2026, 4, 1, tzinfo=UTC)), "prog-1")
    for envelope in (started, milestone, badge, won):
        await harness.publish(envelope)
        await harness.publish(envelope)  # redelivered
    # the same achievement told again under a new event id (a replay) is still told once
    replay = harness.envelope(ProgramWonV1(**won.data), "prog-1", version=won.subject_version)
    await harness.publish(replay)
    await harness.handled(started, milestone, badge, won, replay)
    await harness.settled()

    rep1 = sorted(m["Subject"] for m in harness.smtp.to("rep-1@sales.example"))
    assert rep1 == ["March race has started", "Place 1 in March race", "You reached Silver in March race"]
    rep2 = sorted(m["Subject"] for m in harness.smtp.to("rep-2@sales.example"))
    assert rep2 == ["Badge earned: Five days in a row on the phone", "March race has started"]
    [silver] = [m for m in harness.smtp.to("rep-1@sales.example") if "Silver" in m["Subject"]]
    assert silver.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        "Well done Rep-1: Silver with 104 points. 50.00 EUR will be on your next commission statement.\n"
        "Next: Gold at 200 points (96 to go).\n")
    [first] = [m for m in harness.smtp.to("rep-1@sales.example") if m["Subject"].startswith("Place")]
    assert first.get_body(("plain",)).get_content().replace("\r\n", "\n") == (
        "Congratulations Rep-1: place 1 in March race with 130 points. 500.00 EUR will be on your next "
        "commission statement.\n")

    hooks = [(json.loads(body), headers) for _, body, headers in harness.mailchimp.hooks]
    assert sorted((h["type"], h["rep_id"]) for h, _ in hooks) == [
        ("salesflow.badge_earned", "rep-2"), ("salesflow.program_milestone", "rep-1"),
        ("salesflow.program_started", "rep-1"), ("salesflow.program_started", "rep-2"),
        ("salesflow.program_won", "rep-1")]
    for _, body, headers in harness.mailchimp.hooks:
        assert verify(headers["salesflow-signature"], body, [SECRET], now=time.time())
    [won_hook] = [h for h, _ in hooks if h["type"] == "salesflow.program_won"]
    assert (won_hook["program"]["place"], won_hook["program"]["cash"], won_hook["text"]) == (
        1, "500.00", "Place 1 in March race")
    notified = sorted((e["data"]["reason"], e["data"]["channel"], e["data"]["rep_id"])
                      for e in await harness.published("RepNotified") if e["data"]["reason"] != "lead_assigned")
    assert len(notified) == 10 and len(set(notified)) == 10  # 5 achievements x (email, webhook), none twice
