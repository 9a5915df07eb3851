"""The delivery worker runs Mailchimp calls about one lead in order, everything else concurrently."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notification_service.service_layer.deliveries import _ordered_groups

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def row(id_: str, kind: str, lead: str | None, minutes: int) -> dict:
    return {"id": id_, "org_id": "o", "kind": kind, "lead_id": lead, "created_at": T0 + timedelta(minutes=minutes)}


def test_mailchimp_calls_for_one_lead_are_serialised_oldest_first():
    rows = [row("unsub", "mailchimp", "l1", 5), row("mail", "email", "l1", 1), row("sub", "mailchimp", "l1", 0),
            row("other", "mailchimp", "l2", 0), row("mail2", "email", "l1", 2)]
    groups = sorted([[r["id"] for r in g] for g in _ordered_groups(rows)])
    assert groups == [["mail"], ["mail2"], ["other"], ["sub", "unsub"]]
