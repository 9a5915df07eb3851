"""A lead's story, told from the events every service publishes about it (plain functions, no I/O).

`entries_for` turns one consumed event into the timeline entries it adds: created, scored, routed (rule and
reason), assigned (owner and reason), stage entered / exited, tasks created / completed / skipped, emails
sent or failed, Mailchimp changes, won / lost / reopened, disqualified, updated. Each entry keeps the event's
id, time and correlation id, so a client that sent `X-Correlation-ID` finds the effects of its request.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from salesflow_shared.events import (
    ContactSyncedV1,
    EmailFailedV1,
    EmailSentV1,
    Envelope,
    EventData,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadDisqualifiedV1,
    LeadLostV1,
    LeadReopenedV1,
    LeadRoutedV1,
    LeadUpdatedV1,
    LeadWonV1,
    StageAdvancedV1,
    TaskCompletedV1,
    TaskCreatedV1,
    TaskSkippedV1,
)

# The event types the timeline tells (lead-service subscribes to each).
TOLD_EVENTS = ("LeadCreated", "LeadUpdated", "LeadDisqualified", "LeadRouted", "LeadAssigned", "StageAdvanced",
               "TaskCreated", "TaskCompleted", "TaskSkipped", "EmailSent", "EmailFailed", "ContactSynced",
               "LeadWon", "LeadLost", "LeadReopened")


@dataclass(frozen=True)
class Entry:
    lead_id: str
    kind: str
    occurred_at: datetime
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def _money(value: Any, currency: str | None) -> str:
    return f"{value} {currency}" if value is not None and currency else str(value) if value is not None else ""


def entries_for(data: EventData, envelope: Envelope) -> list[Entry]:
    """The timeline entries one event adds (none for an event that is not about one lead)."""
    at = envelope.occurred_at
    if isinstance(data, LeadCreatedV1):
        lead = data.lead
        entries = [Entry(lead.lead_id, "created", at, f"created from {lead.source or 'the API'}",
                         {"source": lead.source, "form_id": lead.form_id, "status": lead.status})]
        if lead.score is not None:
            entries.append(Entry(lead.lead_id, "scored", at, f"scored {lead.score}", {"score": lead.score}))
        return entries
    if isinstance(data, LeadUpdatedV1):
        lead = data.lead
        changed = [c for c in data.changed if c != "score"]
        entries = []
        if "score" in data.changed:
            entries.append(Entry(lead.lead_id, "scored", at, f"scored {lead.score}",
                                 {"score": lead.score, "cause": data.cause}))
        if changed:
            entries.append(Entry(lead.lead_id, "updated", at, f"{', '.join(changed)} changed ({data.cause or 'edit'})",
                                 {"changed": changed, "cause": data.cause}))
        return entries
    if isinstance(data, LeadDisqualifiedV1):
        return [Entry(data.lead_id, "disqualified", at, f"disqualified: {data.reason}", {"reason": data.reason})]
    if isinstance(data, LeadRoutedV1):
        return [Entry(data.lead_id, "routed", at, f"routed to pipeline {data.pipeline_id}: {data.reason}",
                      {"pipeline_id": data.pipeline_id, "rule_id": data.rule_id,
                       "rule_set_version": data.rule_set_version, "territory_id": data.territory_id,
                       "trigger": data.trigger, "reason": data.reason})]
    if isinstance(data, LeadAssignedV1):
        owner = data.owner_name or data.owner_id or (f"team {data.team_id}" if data.team_id else "nobody")
        return [Entry(data.lead_id, "assigned", at, f"assigned to {owner}: {data.reason}",
                      {"owner_id": data.owner_id, "owner_name": data.owner_name, "team_id": data.team_id,
                       "previous_owner_id": data.previous_owner_id, "rule_id": data.rule_id,
                       "strategy": data.strategy, "trigger": data.trigger, "reason": data.reason,
                       "decision_id": data.decision_id})]
    if isinstance(data, StageAdvancedV1):
        entries = []
        if data.from_stage_id:
            entries.append(Entry(data.lead_id, "stage_exited", data.entered_at, f"left stage {data.from_stage_id}",
                                 {"pipeline_id": data.pipeline_id, "stage_id": data.from_stage_id,
                                  "reason": data.reason}))
        entries.append(Entry(data.lead_id, "stage_entered", data.entered_at,
                             f"entered {data.to_stage_name} ({data.reason})",
                             {"pipeline_id": data.pipeline_id, "stage_id": data.to_stage_id,
                              "stage_name": data.to_stage_name, "position": data.to_stage_position,
                              "reason": data.reason, "moved_by": data.moved_by, "note": data.note}))
        return entries
    if isinstance(data, TaskCreatedV1):
        return [Entry(data.lead_id, "task_created", at, f"task: {data.title}",
                      {"task_id": data.task_id, "title": data.title, "task_type": data.task_type,
                       "required": data.required, "due_at": data.due_at.isoformat() if data.due_at else None,
                       "assignee_id": data.assignee_id, "stage_id": data.stage_id})]
    if isinstance(data, TaskCompletedV1):
        return [Entry(data.lead_id, "task_completed", data.completed_at, f"task {data.task_id} completed",
                      {"task_id": data.task_id, "completed_by": data.completed_by, "stage_id": data.stage_id})]
    if isinstance(data, TaskSkippedV1):
        return [Entry(data.lead_id, "task_skipped", at, f"task {data.task_id} skipped: {data.reason}",
                      {"task_id": data.task_id, "reason": data.reason, "stage_id": data.stage_id})]
    if isinstance(data, EmailSentV1) and data.lead_id:
        return [Entry(data.lead_id, "email_sent", data.sent_at, f"email sent to the {data.recipient_kind}",
                      {"delivery_id": data.delivery_id, "recipient_kind": data.recipient_kind,
                       "template_id": data.template_id, "sequence_id": data.sequence_id, "step": data.step})]
    if isinstance(data, EmailFailedV1) and data.lead_id:
        return [Entry(data.lead_id, "email_failed", at, f"email to the {data.recipient_kind} failed",
                      {"delivery_id": data.delivery_id, "recipient_kind": data.recipient_kind,
                       "template_id": data.template_id, "sequence_id": data.sequence_id})]
    if isinstance(data, ContactSyncedV1):
        return [Entry(data.lead_id, "mailchimp", at, f"Mailchimp list {data.list_id}: {data.action} ({data.outcome})",
                      {"delivery_id": data.delivery_id, "list_id": data.list_id, "action": data.action,
                       "tags": data.tags, "outcome": data.outcome})]
    if isinstance(data, LeadWonV1):
        return [Entry(data.lead_id, "won", data.won_at, f"won {_money(data.value, data.currency)}".strip(),
                      {"pipeline_id": data.pipeline_id, "stage_id": data.stage_id,
                       "value": str(data.value) if data.value is not None else None, "currency": data.currency,
                       "owner_id": data.owner_id})]
    if isinstance(data, LeadLostV1):
        return [Entry(data.lead_id, "lost", data.lost_at, f"lost: {data.reason}",
                      {"pipeline_id": data.pipeline_id, "stage_id": data.stage_id, "reason": data.reason,
                       "reengage_at": data.reengage_at.isoformat() if data.reengage_at else None})]
    if isinstance(data, LeadReopenedV1):
        return [Entry(data.lead_id, "reopened", data.reopened_at, "reopened", {"pipeline_id": data.pipeline_id})]
    return []
