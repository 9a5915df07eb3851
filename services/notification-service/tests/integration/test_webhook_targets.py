"""Outbound webhooks never reach the service's own network (SSRF) when private networks are not allowed:
refused when saved (422 naming `url`) and again before each attempt (a recorded failed delivery)."""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from notification_testkit import Harness

from notification_service.adapters.orm import webhook_subscriptions
from salesflow_shared.events import LeadAssignedV1

SECRET = "whsec-0123456789abcdef"


async def test_private_targets_are_refused_when_saved(production_like_harness: Harness):
    harness = production_like_harness
    port = harness.mailchimp.port
    for url, reason in [
        (f"http://127.0.0.1:{port}/hooks/chat", "127.0.0.1 is a loopback address"),
        (f"http://localhost:{port}/hooks/chat", "localhost resolves to"),  # 127.0.0.1 or ::1, a loopback address
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("https://10.20.30.40/hook", "private"), ("http://192.168.0.10/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://[fe80::1]/hook", "link-local"),
        ("http://224.0.0.251/hook", "multicast"), ("http://[ff02::1]/hook", "multicast"),
        ("http://240.0.0.1/hook", "reserved"), ("http://0.0.0.0:8080/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"), ("http://[::ffff:10.0.0.1]/hook", "10.0.0.1 is a private address"),
        ("http://100.64.1.1/hook", "not globally routable"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ]:
        response = await harness.client.post("/v1/webhook-subscriptions", headers=harness.admin,
                                             json={"url": url, "reasons": ["milestone"], "secret": SECRET})
        assert response.status_code == 422, (url, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        [error] = response.json()["errors"]
        assert error["field"] == "url" and reason in error["message"], (url, error)
    # A public address is fine (an IP literal: the check needs no DNS); removed before anything is sent to it.
    public = await harness.post("/v1/webhook-subscriptions", {"url": "https://93.184.216.34/hook",
                                                              "reasons": ["milestone"], "secret": SECRET})
    assert (await harness.client.delete(f"/v1/webhook-subscriptions/{public['id']}",
                                        headers=harness.admin)).status_code == 204


async def test_a_target_that_became_private_is_refused_at_send_time(production_like_harness: Harness):
    harness = production_like_harness
    # Saved when its name led elsewhere (or before the restriction was on): it resolves to loopback now.
    async with harness.context.database.session() as session:
        await session.execute(sa.insert(webhook_subscriptions).values(
            id=str(uuid.uuid4()), org_id=harness.org, url=f"http://localhost:{harness.mailchimp.port}/hooks/chat",
            secret=SECRET, reasons=["lead_assigned"], rep_id=None, active=True, created_at=harness.clock.now()))
        await session.commit()
    lead = await harness.lead()
    await harness.handled(await harness.send(LeadAssignedV1(
        lead_id=lead, owner_id="rep-1", owner_name="Grace Hopper", owner_email="rep-1@sales.example",
        reason="round robin", decision_id="d-1"), lead))
    await harness.settled()

    [hook] = await harness.deliveries(kind="webhook")
    assert hook["status"] == "failed" and hook["attempts"] == 1  # permanent: not retried
    assert hook["error"].startswith("webhook URL refused: localhost resolves to") and "loopback" in hook["error"]
    assert harness.mailchimp.hooks == []  # nothing reached the local server
    [mail] = await harness.deliveries(kind="email")  # the rep's email is unaffected
    assert mail["status"] == "sent" and len(harness.smtp.to("rep-1@sales.example")) == 1
