"""Outside parties' error texts lose the addresses and Mailchimp member ids they quote before they are logged
or published (logs and events outlive an erasure)."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from notification_service.adapters.repository import Delivery
from notification_service.service_layer.deliveries import outcome_event, redact_personal


def test_addresses_and_member_ids_are_redacted_and_the_rest_kept():
    text = ("HTTP 400: Member Exists: Ada.Lovelace+crm@prospect.example is already a list member "
            "(/lists/L1/members/869e2edf1eaaa61ab5f6d66d22345e89); 550 <ada@prospect.example>: mailbox unavailable")
    assert redact_personal(text) == ("HTTP 400: Member Exists: [redacted] is already a list member "
                                     "(/lists/L1/members/[redacted]); 550 <[redacted]>: mailbox unavailable")
    assert redact_personal(None) is None


def test_failure_events_carry_the_redacted_error():
    now = datetime.now(UTC)
    row = Delivery(id="d-1", org_id="o", idem_key="k", kind="email", recipient_kind="prospect", recipient=None,
                   lead_id="l-1", rep_id=None, reason="sequence", sequence_id=None, enrollment_id=None, step=None,
                   template_id=None, rule_id=None, status="sending", attempts=1, next_attempt_at=now, payload={},
                   message_id="<d-1@x>", error=None, created_at=now, updated_at=now)
    [failed] = outcome_event(row, ok=False, error="550 5.1.1 <bo@acme.example>: unknown user",
                             now=datetime.now(UTC))
    assert failed.error == "550 5.1.1 <[redacted]>: unknown user"
    synced = replace(row, kind="mailchimp", recipient_kind="list", payload={"list_id": "L1"})
    [event] = outcome_event(synced, ok=False, error="HTTP 400: bo@acme.example looks fake", now=datetime.now(UTC))
    assert event.error == "HTTP 400: [redacted] looks fake"
