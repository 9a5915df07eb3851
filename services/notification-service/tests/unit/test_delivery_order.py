"""The delivery worker runs Mailchimp calls about one lead in order, everything else concurrently."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notification_service.adapters.repository import Delivery
from notification_service.service_layer.deliveries import _ordered_groups

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def row(id_: str, kind: str, lead: str | None, minutes: int) -> Delivery:
    at = T0 + timedelta(minutes=minutes)
    return Delivery(id=id_, org_id="o", idem_key=id_, kind=kind, recipient_kind="list", recipient=None, lead_id=lead,
                    rep_id=None, reason="list_rule", sequence_id=None, enrollment_id=None, step=None,
                    template_id=None, rule_id=None, status="sending", attempts=1, next_attempt_at=at, payload=None,
                    message_id=None, error=None, created_at=at, updated_at=at)


def test_mailchimp_calls_for_one_lead_are_serialised_oldest_first():
    rows = [row("unsub", "mailchimp", "l1", 5), row("mail", "email", "l1", 1), row("sub", "mailchimp", "l1", 0),
            row("other", "mailchimp", "l2", 0), row("mail2", "email", "l1", 2)]
    groups = sorted([[r.id for r in g] for g in _ordered_groups(rows)])
    assert groups == [["mail"], ["mail2"], ["other"], ["sub", "unsub"]]
