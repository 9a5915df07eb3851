"""A database outage between the SMTP server's "250 OK" and recording "sent" must not send the email twice:
the worker keeps the outcome and records it once the database is back, even though the delivery's lease ran
out meanwhile."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from notification_testkit import Harness

from salesflow_shared.events import LeadAssignedV1, StageAdvancedV1
from salesflow_shared.testing import refuse_connections


async def test_outcome_recorded_after_an_outage_sends_nothing_twice(harness: Harness, shared_database_url: str):
    welcome = await harness.template("Welcome", "Hello {{ lead.first_name }}")
    await harness.post("/v1/sequences", {"name": "welcome", "trigger": "stage_entry", "stage_id": "s1",
                                         "steps": [{"template_id": welcome}]})
    lead = await harness.lead(email="outage@prospect.example", first_name="Olga")
    await harness.handled(await harness.send(LeadAssignedV1(lead_id=lead, owner_id="rep-1", owner_email="r@x.io",
                                                            reason="rr"), lead))
    await harness.settled()
    assert len(harness.smtp.to("r@x.io")) == 1  # the rep's "new lead" email, before any fault
    restored = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def outage_at_acceptance() -> None:
        harness.smtp.on_accept = None  # once
        await refuse_connections(shared_database_url)
        # The outage outlasts the lease: without the kept outcome the row would be claimed and sent again.
        harness.clock.advance(seconds=harness.settings.delivery_lease_s + 60)

        async def end_outage() -> None:
            await asyncio.sleep(2.0)
            await refuse_connections(shared_database_url, refuse=False)
            restored.set()
        asyncio.run_coroutine_threadsafe(end_outage(), loop)

    harness.smtp.on_accept = outage_at_acceptance
    try:
        await harness.send(StageAdvancedV1(lead_id=lead, pipeline_id="pipe-1", to_stage_id="s1", to_stage_name="s1",
                                           to_stage_position=1, reason="entry", entered_at=datetime.now(UTC)), lead)
        await asyncio.wait_for(restored.wait(), timeout=30)
    finally:
        await refuse_connections(shared_database_url, refuse=False)
    await harness.settled(timeout=20)
    await asyncio.sleep(1.0)  # a second claim, had there been one, would have sent by now
    assert len(harness.smtp.to("outage@prospect.example")) == 1
    [delivery] = [d for d in await harness.deliveries(lead_id=lead) if d["recipient_kind"] == "prospect"]
    assert delivery["status"] == "sent" and delivery["attempts"] == 1, delivery
