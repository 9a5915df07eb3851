"""Event handlers, registered in one explicit map (each runs in its own transaction with the inbox).

Handlers only decide and record: projections, enrollments and pending deliveries, all in the dispatcher's
transaction. Nothing is sent from a handler; the workers send after that transaction committed.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from salesflow_shared.clock import Clock
from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import (
    Envelope,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadDisqualifiedV1,
    LeadErasedV1,
    LeadLostV1,
    LeadReopenedV1,
    LeadUpdatedV1,
    LeadWonV1,
    PipelineDefinedV1,
    QuotaReachedV1,
    RepCreatedV1,
    RepDeactivatedV1,
    RepUpdatedV1,
    StageAdvancedV1,
    TaskCompletedV1,
    TaskCreatedV1,
    TaskOverdueV1,
    TaskReassignedV1,
    TaskSkippedV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import LeadSequences, ListSettings, MilestoneRuleRecord, TaskAssignment
from ..config import Settings
from ..domain.leads import KnownLead
from ..domain.milestones import DealFact, MilestoneRule, QuotaFact, fired, fired_for_quota
from ..domain.sequences import matches_lead_created, matches_outcome, matches_stage_entry
from . import mailchimp_sync
from .deliveries import cancel_pending, forget_erased_lead_data
from .notify import NotKnownYet, notice_template_key, notify_rep
from .program_notifications import ProgramNotifications
from .projections import (
    ERASED_FIELDS,
    apply_pipeline_change,
    apply_snapshot,
    ensure_lead,
    enter_stage,
    set_lead_fields,
    store_snapshot,
)
from .sequences import enroll, spec_of, stop_enrollments, stop_running


class NotificationHandlers:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    # ------------------------------------------------------------------ lead-service
    async def on_lead_created(self, data: LeadCreatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = self.clock.now()
        # Its sequences and its lists, read with the snapshot's write.
        lead, follow_ups = await store_snapshot(uow.session, envelope.org_id, data.lead, envelope.subject_version,
                                                now, trigger="lead_created")
        if lead.erased:
            return
        # Its stage may have arrived first, when its address was not known yet.
        await self._follow_read_lists(uow, envelope.org_id, lead, f"lead@{envelope.subject_version}", now,
                                      follow_ups.lists)
        for sequence in follow_ups.sequences.starting:
            if matches_lead_created(spec_of(sequence), data.lead.source, data.lead.form_id):
                await enroll(uow.session, self.settings, sequence=sequence, lead_id=data.lead.lead_id,
                             trigger_key="created", stage_id=None, now=now, lead_timezone=lead.timezone)

    async def on_lead_updated(self, data: LeadUpdatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        stored = await apply_snapshot(uow.session, org, data.lead, envelope.subject_version, now, trigger=None)
        if stored is None:
            return
        lead, follow_ups = stored
        # Its lists follow its state, and its address, when that changed (told by the lists themselves).
        await mailchimp_sync.follow_update(uow, follow_ups.lists, org_id=org, lead=lead,
                                           version=envelope.subject_version, now=now)

    async def on_lead_disqualified(self, data: LeadDisqualifiedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        lead = await ensure_lead(uow.session, org, data.lead_id, now)
        if envelope.subject_version > lead.lead_version:
            lead = await repository.update_lead(uow.session, org, data.lead_id, {
                "status": "disqualified", "lead_version": envelope.subject_version, "updated_at": now})
        await self._leave_everything(uow, org, data.lead_id, "disqualified", now,
                                     key_suffix=f"v{envelope.subject_version}", archive=False)
        await self._follow_lists(uow, org, lead, f"disqualified@v{envelope.subject_version}", now)

    async def on_lead_erased(self, data: LeadErasedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        await set_lead_fields(uow.session, org, data.lead_id, now, erased=True, **ERASED_FIELDS)
        await self._leave_everything(uow, org, data.lead_id, "erased", now, key_suffix="erased", archive=True)
        # Rep notifications about the lead are moot now, and carry its name.
        await cancel_pending(uow.session, org_id=org, lead_id=data.lead_id, now=now, reason="lead erased",
                             kinds=("email", "webhook"), recipient_kinds=("rep", "webhook"))
        # Scrub personal data from the delivery log (what was sent, to whom); the facts (when, why) remain.
        await repository.scrub_prospect_emails(uow.session, org, data.lead_id, now)
        # Finished deliveries now; the Mailchimp member ids once the archive calls above are done (now, when
        # there are none); a delivery in flight when its attempt ends.
        await forget_erased_lead_data(uow.session, org, data.lead_id)

    async def _leave_everything(self, uow: UnitOfWork, org: str, lead_id: str, fact: Any, now: Any, *,
                                key_suffix: str, archive: bool) -> None:
        await stop_enrollments(uow.session, org_id=org, lead_id=lead_id, fact=fact, now=now)
        await cancel_pending(uow.session, org_id=org, lead_id=lead_id, now=now, reason=f"lead {fact}")
        await mailchimp_sync.remove_everywhere(uow, org_id=org, lead_id=lead_id, archive=archive, reason=fact,
                                               key_suffix=key_suffix, now=now)

    # ------------------------------------------------------------------ assignment-service
    async def on_lead_assigned(self, data: LeadAssignedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        if not data.owner_id:
            return
        reason = "customer_handover" if data.trigger == "lead_won" else "lead_assigned"
        # The usual first assignment (the row names no owner yet): written by the statement that locks it, which
        # also says whether the owner's directory entry is held and reads what telling the owner needs.
        owned = await repository.own_ownerless_lead(uow.session, org, data.lead_id, data.owner_id, now,
                                                    notice_template_key=notice_template_key(reason))
        if owned is None or not owned.owner_in_directory:
            # What the assignment says of its owner, kept until the directory's own entry arrives (with the entry
            # held this writes nothing, so it is left out when the statement above said so).
            await repository.upsert_rep(uow.session, org, data.owner_id, now, name=data.owner_name,
                                        email=data.owner_email, timezone=data.owner_timezone)
        if owned is not None:
            former_owner, lead = None, owned.lead
        else:
            before = await ensure_lead(uow.session, org, data.lead_id, now)
            former_owner = before.owner_id
            # Often told already (StageAdvanced names the owner too): then the row stays as it is.
            lead = before if before.owner_id == data.owner_id else await repository.update_lead(
                uow.session, org, data.lead_id, {"owner_id": data.owner_id, "updated_at": now})
        for previous in {former_owner, data.previous_owner_id}:
            await repository.remember_past_owner(uow.session, org, data.lead_id, previous, data.owner_id, now)
        if data.previous_owner_id == data.owner_id:
            return
        decision = data.decision_id or f"v{envelope.subject_version}"
        if reason == "customer_handover":  # the account manager takes the customer over
            await notify_rep(uow, self.settings, org_id=org, rep_id=data.owner_id, reason=reason,
                             now=now, lead_id=data.lead_id, deal=await handover_deal(uow, org, data, lead),
                             once_key=f"customer_handover:{data.lead_id}:{data.owner_id}:{decision}")
            return
        await notify_rep(uow, self.settings, org_id=org, rep_id=data.owner_id, reason=reason, now=now,
                         lead_id=data.lead_id, once_key=f"lead_assigned:{data.lead_id}:{data.owner_id}:{decision}")

    async def on_rep_changed(self, data: RepCreatedV1 | RepUpdatedV1 | RepDeactivatedV1, envelope: Envelope,
                             uow: UnitOfWork) -> None:
        await repository.save_rep(uow.session, envelope.org_id, data.rep, envelope.subject_version, self.clock.now())

    # ------------------------------------------------------------------ pipeline-service
    async def on_pipeline_defined(self, data: PipelineDefinedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await repository.save_pipeline_definition(uow.session, envelope.org_id, data, envelope.subject_version,
                                                  self.clock.now())

    async def on_stage_advanced(self, data: StageAdvancedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        entry = await enter_stage(
            uow.session, org, data.lead_id, envelope.subject_version, now, pipeline_id=data.pipeline_id,
            stage_id=data.to_stage_id, stage_ids=data.pipeline_stage_ids, owner_id=data.owner_id,
            values={"pipeline_id": data.pipeline_id, "stage_id": data.to_stage_id, "stage_name": data.to_stage_name,
                    **({"outcome": None} if data.reason == "reopened" else {})})
        before, lead, follow_ups = entry.before, entry.after, entry.follow_ups
        if follow_ups is None:  # an older move arriving late: the lead is elsewhere now (but entered that stage)
            await self._follow_lists(uow, org, lead, f"stage:{data.to_stage_id}@{envelope.subject_version}", now)
            return
        sequences = follow_ups.sequences
        await stop_running(uow.session, sequences.running, fact="stage_entered", now=now, stage_id=data.to_stage_id)
        transition = f"{data.to_stage_id}@{envelope.subject_version}"
        if not lead.erased and not lead.unsubscribed and lead.status != "disqualified":
            for sequence in sequences.starting:
                if matches_stage_entry(spec_of(sequence), data.pipeline_id, data.to_stage_id):
                    await enroll(uow.session, self.settings, sequence=sequence, lead_id=data.lead_id,
                                 trigger_key=f"stage:{transition}", stage_id=data.to_stage_id, now=now,
                                 lead_timezone=lead.timezone)
        await self._follow_read_lists(uow, org, lead, f"stage:{transition}", now, follow_ups.lists)
        left = data.from_stage_id or before.stage_id
        if left and left != data.to_stage_id:
            await self._milestones(uow, org, lead, DealFact(
                kind="left_stage", lead_id=data.lead_id, rep_id=lead.owner_id, value=_dec(lead.value),
                currency=lead.currency, at=data.entered_at, from_stage_id=left), now)

    async def on_lead_won(self, data: LeadWonV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        change = await apply_pipeline_change(uow.session, org, data.lead_id, envelope.subject_version, now,
                                             outcome="won", won_value=data.value, won_currency=data.currency,
                                             won_notes=data.notes, pipeline_id=data.pipeline_id,
                                             **({"stage_id": data.stage_id} if data.stage_id else {}))
        if change is None:
            return
        _, lead = change
        follow_ups = await repository.lead_follow_ups(uow.session, org, data.lead_id, "lead_won")
        await self._follow_read_lists(uow, org, lead, f"won@{envelope.subject_version}", now, follow_ups.lists)
        await self._after_outcome(uow, org, lead, "won", "lead_won", follow_ups.sequences, data.pipeline_id,
                                  f"won@{envelope.subject_version}", now)
        value = data.value if data.value is not None else _dec(lead.value)
        await self._milestones(uow, org, lead, DealFact(
            kind="won", lead_id=data.lead_id, rep_id=data.owner_id or lead.owner_id, value=value,
            currency=data.currency or lead.currency, at=data.won_at), now)

    async def on_lead_lost(self, data: LeadLostV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        change = await apply_pipeline_change(uow.session, org, data.lead_id, envelope.subject_version, now,
                                             outcome="lost", pipeline_id=data.pipeline_id,
                                             **({"stage_id": data.stage_id} if data.stage_id else {}))
        if change is None:
            return
        _, lead = change
        transition = f"lost@{envelope.subject_version}"
        follow_ups = await repository.lead_follow_ups(uow.session, org, data.lead_id, "lead_lost")
        await self._after_outcome(uow, org, lead, "lost", "lead_lost", follow_ups.sequences, data.pipeline_id,
                                  transition, now)
        await self._follow_read_lists(uow, org, lead, transition, now, follow_ups.lists)

    async def on_lead_reopened(self, data: LeadReopenedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org = self.clock.now(), envelope.org_id
        lead = await set_lead_fields(uow.session, org, data.lead_id, now, reopened=True)  # whatever the event's age
        change = await apply_pipeline_change(uow.session, org, data.lead_id, envelope.subject_version, now,
                                             outcome=None, pipeline_id=data.pipeline_id)
        if change is None:
            await self._follow_lists(uow, org, lead, f"reopened@{envelope.subject_version}", now)
            return
        _, lead = change
        await stop_enrollments(uow.session, org_id=org, lead_id=data.lead_id, fact="reopened", now=now)
        await self._follow_lists(uow, org, lead, f"reopened@{envelope.subject_version}", now)

    async def _follow_lists(self, uow: UnitOfWork, org: str, lead: KnownLead, transition: str, now: Any) -> None:
        """The lead's Mailchimp lists and tags follow its current state (`lead`, as this transaction wrote it:
        mailchimp_sync.reconcile)."""
        await mailchimp_sync.reconcile(uow, org_id=org, lead=lead, transition=transition, now=now)

    async def _follow_read_lists(self, uow: UnitOfWork, org: str, lead: KnownLead, transition: str, now: Any,
                                 lists: ListSettings | None) -> None:
        """`_follow_lists` with the lead's list settings read already in this transaction (`lead_follow_ups`)."""
        await mailchimp_sync.reconcile_as_read(uow, lists, org_id=org, lead=lead, transition=transition, now=now)

    async def _after_outcome(self, uow: UnitOfWork, org: str, lead: KnownLead, fact: Any, trigger: Any,
                             sequences: LeadSequences, pipeline_id: str, trigger_key: str, now: Any) -> None:
        """`sequences`: the lead's, read for `trigger` (`lead_follow_ups`)."""
        await stop_running(uow.session, sequences.running, fact=fact, now=now)
        if not lead.erased and not lead.unsubscribed and lead.status != "disqualified":
            for sequence in sequences.starting:
                if matches_outcome(spec_of(sequence), trigger, pipeline_id):
                    await enroll(uow.session, self.settings, sequence=sequence, lead_id=lead.lead_id,
                                 trigger_key=trigger_key, stage_id=None, now=now, lead_timezone=lead.timezone)

    async def _milestones(self, uow: UnitOfWork, org: str, lead: KnownLead, fact: DealFact, now: Any) -> None:
        if not fact.rep_id:
            return
        rows, rules = await _active_milestone_rules(uow, org)
        for rule, once_key in fired(rules, fact):
            await notify_rep(uow, self.settings, org_id=org, rep_id=fact.rep_id, reason="milestone", now=now,
                             lead_id=lead.lead_id, once_key=once_key,
                             milestone={"id": rule.id, "name": rule.name, "kind": rule.kind},
                             channels=tuple(rows[rule.id].channels))

    # ------------------------------------------------------------------ metrics-service
    async def on_quota_reached(self, data: QuotaReachedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        if data.scope != "rep":
            return  # a team's members are assignment-service's knowledge, not carried by the event
        now, org = self.clock.now(), envelope.org_id
        rows, rules = await _active_milestone_rules(uow, org)
        fact = QuotaFact(quota_id=data.quota_id, rep_id=data.scope_id, amount=data.amount, currency=data.currency)
        quota = {"period": data.period, "period_start": data.period_start.isoformat(), "target": str(data.amount),
                 "attained": str(data.attained), "attainment_pct": data.attainment_pct, "currency": data.currency}
        for rule, once_key in fired_for_quota(rules, fact):
            await notify_rep(uow, self.settings, org_id=org, rep_id=fact.rep_id, reason="milestone", now=now,
                             once_key=once_key, milestone={"id": rule.id, "name": rule.name, "kind": rule.kind,
                                                           "quota": quota},
                             channels=tuple(rows[rule.id].channels))

    # ------------------------------------------------------------------ tasks
    async def on_task_created(self, data: TaskCreatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = self.clock.now()
        assignment = TaskAssignment(org_id=envelope.org_id, task_id=data.task_id, assignee_id=data.assignee_id,
                                    version=envelope.subject_version, at=now)
        if not _reminded(data.assignee_id, data.due_at, now):
            await repository.record_task_assignee(uow.session, assignment)  # a reassignment may come later
            return
        # The assignment is recorded by the statement that adds the reminder; when the task was reassigned already
        # (the reassignment arrived first) nothing is: the reassignment's reminder stands.
        await self._remind_when_due(uow, envelope.org_id, data.assignee_id, data.task_id, data.lead_id, data.title,
                                    data.due_at, once_key=f"task_due:{data.task_id}", now=now, assignment=assignment)

    async def on_task_reassigned(self, data: TaskReassignedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now, org, version = self.clock.now(), envelope.org_id, envelope.subject_version
        if not await repository.record_task_assignee(uow.session, TaskAssignment(
                org_id=org, task_id=data.task_id, assignee_id=data.assignee_id, version=version, at=now)):
            return  # replayed, or older than an assignment we already acted on
        # The reminder pending for the former assignee is not theirs to act on any more.
        await cancel_pending(uow.session, org_id=org, now=now, reason="task reassigned", kinds=("email", "webhook"),
                             recipient_kinds=("rep", "webhook"), key_prefix=f"task_due:{data.task_id}:")
        if not data.assignee_id:
            return  # a team's task: nobody in particular to tell
        task = _task(data.task_id, data.title, data.due_at)
        if data.reason == "manual":  # an owner change already told the new owner of the lead (lead_assigned)
            await notify_rep(uow, self.settings, org_id=org, rep_id=data.assignee_id, reason="task_assigned",
                             now=now, lead_id=data.lead_id, once_key=f"task_assigned:{data.task_id}:v{version}",
                             task=task)
        await self._remind_when_due(uow, org, data.assignee_id, data.task_id, data.lead_id, data.title, data.due_at,
                                    once_key=f"task_due:{data.task_id}:v{version}", now=now)

    async def _remind_when_due(self, uow: UnitOfWork, org: str, rep_id: str | None, task_id: str, lead_id: str,
                               title: str | None, due_at: Any, *, once_key: str, now: Any,
                               assignment: TaskAssignment | None = None) -> None:
        """`assignment`: recorded with the reminder (`notify_rep`); given only when there is one to send."""
        if not rep_id or not _reminded(rep_id, due_at, now):
            return
        remind_at = due_at - timedelta(minutes=self.settings.task_reminder_lead_minutes)
        await notify_rep(uow, self.settings, org_id=org, rep_id=rep_id, reason="task_due", now=now, lead_id=lead_id,
                         once_key=once_key, task=_task(task_id, title, due_at), not_before=max(remind_at, now),
                         assignment=assignment)

    async def on_task_closed(self, data: TaskCompletedV1 | TaskSkippedV1, envelope: Envelope,
                             uow: UnitOfWork) -> None:
        await cancel_pending(uow.session, org_id=envelope.org_id, now=self.clock.now(), reason="task closed",
                             kinds=("email", "webhook"), recipient_kinds=("rep", "webhook"),
                             key_prefix=f"task_due:{data.task_id}:")

    async def on_task_overdue(self, data: TaskOverdueV1, envelope: Envelope, uow: UnitOfWork) -> None:
        now = self.clock.now()
        await cancel_pending(uow.session, org_id=envelope.org_id, now=now, reason="task overdue",
                             kinds=("email", "webhook"), recipient_kinds=("rep", "webhook"),
                             key_prefix=f"task_due:{data.task_id}:")
        if data.assignee_id:
            await notify_rep(uow, self.settings, org_id=envelope.org_id, rep_id=data.assignee_id,
                             reason="task_overdue", now=now, lead_id=data.lead_id,
                             once_key=f"task_overdue:{data.task_id}", task=_task(data.task_id, data.title, data.due_at))

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.add(LeadCreatedV1, self.on_lead_created)
        handlers.add(LeadUpdatedV1, self.on_lead_updated)
        handlers.add(LeadDisqualifiedV1, self.on_lead_disqualified)
        handlers.add(LeadErasedV1, self.on_lead_erased)
        handlers.add(LeadAssignedV1, self.on_lead_assigned)
        handlers.add(RepCreatedV1, self.on_rep_changed)
        handlers.add(RepUpdatedV1, self.on_rep_changed)
        handlers.add(RepDeactivatedV1, self.on_rep_changed)
        handlers.add(PipelineDefinedV1, self.on_pipeline_defined)
        handlers.add(StageAdvancedV1, self.on_stage_advanced)
        handlers.add(LeadWonV1, self.on_lead_won)
        handlers.add(LeadLostV1, self.on_lead_lost)
        handlers.add(LeadReopenedV1, self.on_lead_reopened)
        handlers.add(TaskCreatedV1, self.on_task_created)
        handlers.add(TaskCompletedV1, self.on_task_closed)
        handlers.add(TaskSkippedV1, self.on_task_closed)
        handlers.add(TaskOverdueV1, self.on_task_overdue)
        handlers.add(TaskReassignedV1, self.on_task_reassigned)
        handlers.add(QuotaReachedV1, self.on_quota_reached)
        return handlers


async def unsubscribe_lead(uow: UnitOfWork, *, org_id: str, lead_id: str, now: Any) -> bool:
    """The prospect clicked the unsubscribe link: no more sequence emails, off the Mailchimp lists.
    False when it already was unsubscribed."""
    lead = await ensure_lead(uow.session, org_id, lead_id, now)
    if lead.unsubscribed:
        return False
    await repository.update_lead(uow.session, org_id, lead_id, {"unsubscribed": True, "updated_at": now})
    await stop_enrollments(uow.session, org_id=org_id, lead_id=lead_id, fact="unsubscribed", now=now)
    await cancel_pending(uow.session, org_id=org_id, lead_id=lead_id, now=now, reason="lead unsubscribed")
    await mailchimp_sync.remove_everywhere(uow, org_id=org_id, lead_id=lead_id, archive=False,
                                           reason="unsubscribed", key_suffix="unsubscribed", now=now)
    return True


async def _active_milestone_rules(uow: UnitOfWork, org_id: str
                                  ) -> tuple[dict[str, MilestoneRuleRecord], list[MilestoneRule]]:
    """The org's active milestone rules: their rows by id, and as domain rules."""
    rows = await repository.active_milestone_rules(uow.session, org_id)
    return ({r.id: r for r in rows},
            [MilestoneRule(id=r.id, name=r.name, kind=r.kind, stage_id=r.stage_id,
                           min_value=_dec(r.min_value), currency=r.currency) for r in rows])


async def handover_deal(uow: UnitOfWork, org_id: str, data: LeadAssignedV1, lead: KnownLead) -> dict[str, Any]:
    """What the account manager is told of the won deal (`lead`, as this transaction holds it): its value and notes
    (LeadWon) and who closed it. Waits (NotKnownYet) until the win and the closer's directory entry have arrived."""
    if lead.outcome != "won":
        raise NotKnownYet(f"lead {data.lead_id}'s win has not arrived yet (no LeadWon received)")
    closer = await repository.get_rep(uow.session, org_id, data.previous_owner_id) if data.previous_owner_id else None
    if data.previous_owner_id and closer is None:
        raise NotKnownYet(f"rep '{data.previous_owner_id}' (the closer) is not in the directory here yet")
    value = lead.won_value if lead.won_value is not None else lead.value
    return {"value": None if value is None else str(value),
            "currency": lead.won_currency or lead.currency,
            "notes": lead.won_notes, "closer": {"id": data.previous_owner_id,
                                                       "name": (closer or {}).get("name"),
                                                       "email": (closer or {}).get("email")}}


def _reminded(rep_id: str | None, due_at: Any, now: Any) -> bool:
    """Whether a task's assignee is reminded before it falls due: not when nobody is assigned, nor when it is due
    already (TaskOverdue will tell the rep)."""
    return bool(rep_id) and due_at is not None and due_at > now


def _task(task_id: str, title: str | None, due_at: Any) -> dict[str, Any]:
    return {"id": task_id, "title": title, "due_at": due_at.isoformat() if due_at else None}


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def build_event_handlers(settings: Settings, clock: Clock) -> EventHandlers:
    return EventHandlers.merged(NotificationHandlers(settings, clock).handlers(),
                                ProgramNotifications(settings, clock).handlers())
