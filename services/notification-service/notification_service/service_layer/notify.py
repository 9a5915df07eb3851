"""Rep notifications: by email (the org's `rep.<reason>` template or a built-in one) and by every matching
webhook subscription; each channel has its own once-key, so a notification fires once per channel."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import TaskAssignment
from ..config import Settings
from .compose import DEFAULT_REP_TEMPLATES, TemplateError, email_payload, variables
from .deliveries import new_delivery, publish_outcome, record_delivery


class NotKnownYet(Exception):
    """A notification's recipient (the rep) or subject (the lead's details) has not arrived from its owning
    service yet. The event is retried with the bus's growing delays and then parked in the dead letters (an admin
    sees and replays it there): a message is never dropped, nor rendered from half the data."""


async def notify_rep(uow: UnitOfWork, settings: Settings, *, org_id: str, rep_id: str, reason: str, once_key: str,
                     now: datetime, lead_id: str | None = None, task: dict[str, Any] | None = None,
                     milestone: dict[str, Any] | None = None, channels: tuple[str, ...] = ("email", "webhook"),
                     not_before: datetime | None = None, deal: dict[str, Any] | None = None,
                     program: dict[str, Any] | None = None, assignment: TaskAssignment | None = None) -> int:
    """Record the notification's deliveries (pending); the number of new ones (0 for a duplicate).
    Raises NotKnownYet while the rep or the lead's details are unknown here.
    `assignment`: the task assignment the notification is about, recorded here (`record_task_assignee`, by the
    statement that adds the email's delivery); when as new an assignment is known already, nothing is notified."""
    session = uow.session
    # The rep, the lead, the org's template and whether it has webhooks at all: one statement.
    notice = await repository.rep_notice(session, org_id, rep_id, lead_id=lead_id,
                                         template_key=notice_template_key(reason) if "email" in channels else None)
    rep, lead = notice.rep, notice.lead
    missing = None
    if not rep or not rep.get("email"):
        missing = f"rep '{rep_id}' is not in the directory here yet (no RepCreated received)"
    elif lead_id and (lead is None or (not lead.lead_version and not lead.erased)):
        missing = f"lead {lead_id}'s details have not arrived yet (no LeadCreated received)"
    if missing is not None or (assignment is not None and "email" not in channels):
        if assignment is not None and not await repository.record_task_assignee(session, assignment):
            return 0  # an older assignment: nothing to tell (nor to wait for)
        assignment = None  # recorded
        if missing is not None:
            raise NotKnownYet(missing)
    assert rep is not None
    values = variables(org_id=org_id, lead=lead, owner=rep, task=task, milestone=milestone, deal=deal,
                       program=program)
    rule_id = (milestone or {}).get("id")
    common: dict[str, Any]  # of several types: what every delivery row of this notification shares
    common = dict(org_id=org_id, reason=reason, now=now, lead_id=lead_id, rep_id=rep_id, rule_id=rule_id,
                  not_before=not_before, message_id_domain=settings.message_id_domain)
    created = 0
    if "email" in channels:
        template = notice.template
        parts = template.parts() if template else DEFAULT_REP_TEMPLATES[reason]
        error, payload = None, None
        try:
            payload = email_payload(settings, to_name=rep.get("name"), to_email=rep["email"], parts=parts,
                                    variables_=values)
        except TemplateError as exc:
            error = f"rep template does not render: {exc}"
        email = dict(common, idem_key=f"{once_key}:email", kind="email", recipient_kind="rep",
                     recipient=rep["email"], payload=payload, template_id=template.id if template else None,
                     status="pending" if error is None else "failed", error=error)
        if assignment is None:
            row = await record_delivery(session, **email)
        else:
            row = new_delivery(**email)
            recorded, added = await repository.record_task_assignee_adding_delivery(session, assignment, row)
            if not recorded:
                return 0  # an older assignment: nothing to tell
            row = row if added else None
        if row is not None:
            created += 1
            if error is not None:
                publish_outcome(uow, row, ok=False, now=now, error=error)
    if "webhook" in channels and notice.any_webhooks:
        for sub in await repository.active_webhook_subscriptions(session, org_id):
            if reason not in (sub.reasons or []) or (sub.rep_id and sub.rep_id != rep_id):
                continue
            body = {"type": f"salesflow.{reason}", "org_id": org_id, "rep_id": rep_id, "lead_id": lead_id,
                    "rep_name": rep.get("name"), "task": task, "milestone": milestone, "deal": deal,
                    "text": _webhook_text(reason, values), "occurred_at": now.isoformat(),
                    **({"program": program} if program is not None else {})}
            row = await record_delivery(session, **common, idem_key=f"{once_key}:webhook:{sub.id}",
                                        kind="webhook", recipient_kind="webhook", recipient=sub.url,
                                        payload={"subscription_id": sub.id, "body": body})
            created += 1 if row is not None else 0
    return created


def notice_template_key(reason: str) -> str:
    """The key of the org's template for a rep email about `reason` (none: the built-in one)."""
    return f"rep.{reason}"


def _webhook_text(reason: str, values: dict[str, Any]) -> str:
    try:
        from ..domain.rendering import render_part
        return render_part("subject", DEFAULT_REP_TEMPLATES[reason]["subject"], values)
    except TemplateError:
        return reason.replace("_", " ")
