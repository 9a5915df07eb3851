"""Sequence enrollments (the schedule, stored in the database) and the worker that sends due steps.

The worker claims due enrollments with FOR UPDATE SKIP LOCKED, so several replicas share the work without
sending a step twice; in that same transaction it renders the step, records the delivery (pending, with its
idempotency key) and moves the enrollment to its next step. The delivery worker then sends it.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.app import run_periodically
from salesflow_shared.db import is_database_outage
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import (
    Delivery,
    DueStep,
    Enrollment,
    EnrollmentAdvance,
    RunningEnrollment,
    SequenceRecord,
)
from ..config import Settings
from ..domain.leads import KnownLead
from ..domain.sequences import SequenceSpec, Step, StopFact, next_due, still_eligible, stop_reason
from ..domain.timing import BusinessHours
from .compose import TemplateError, email_payload, prospect_headers, unsubscribe_url, variables
from .deliveries import new_delivery, publish_outcome, record_delivery
from .projections import lead_state

log = structlog.get_logger(__name__)
WORKER = "sequences"  # the worker's name: the commit bell's listener


def spec_of(sequence: SequenceRecord) -> SequenceSpec:
    steps = tuple(Step(template_id=s["template_id"], delay=timedelta(minutes=float(s.get("delay_minutes", 0))),
                       business_hours=bool(s.get("business_hours", False))) for s in sequence.steps)
    return SequenceSpec(trigger=sequence.trigger, steps=steps, pipeline_id=sequence.pipeline_id,
                        stage_id=sequence.stage_id, source=sequence.source)


def business_hours(settings: Settings) -> BusinessHours:
    from datetime import time
    return BusinessHours(days=frozenset(settings.business_days), start=time(settings.business_start_hour),
                         end=time(settings.business_end_hour))


async def enroll(session: AsyncSession, settings: Settings, *, sequence: SequenceRecord, lead_id: str,
                 trigger_key: str, stage_id: str | None, now: datetime, lead_timezone: str | None) -> bool:
    """Start the sequence for the lead (once per trigger_key); its first step is due after its delay."""
    spec = spec_of(sequence)
    if not spec.steps:
        return False
    due = next_due(now, spec.steps[0], lead_timezone=lead_timezone, hours=business_hours(settings),
                   fallback_timezone=sequence.business_timezone or settings.default_business_timezone)
    return await repository.add_enrollment(session, Enrollment(
        id=str(uuid.uuid4()), org_id=sequence.org_id, sequence_id=sequence.id, lead_id=lead_id,
        trigger_key=trigger_key, stage_id=stage_id, status="active", stop_reason=None, next_step=0, next_due_at=due,
        created_at=now, updated_at=now))


async def stop_enrollments(session: AsyncSession, *, org_id: str, lead_id: str, fact: StopFact, now: datetime,
                           stage_id: str | None = None) -> int:
    return await stop_running(session, await repository.running_enrollments(session, org_id, lead_id), fact=fact,
                              now=now, stage_id=stage_id)


async def stop_running(session: AsyncSession, running_enrollments: list[RunningEnrollment], *, fact: StopFact,
                       now: datetime, stage_id: str | None = None) -> int:
    """Stop those of the lead's running enrollments that `fact` ends; how many."""
    stopped = 0
    for running in running_enrollments:
        reason = stop_reason(running.trigger, running.stage_id, fact, stage_id)
        if reason is not None:
            await repository.stop_enrollment(session, running.id, reason, now)
            stopped += 1
    return stopped


@dataclass
class StepWrites:
    """The usual outcome of a batch's steps, written together: each step's delivery (pending) and its
    enrollment's move to the next step, for the whole batch one statement on PostgreSQL (each step's delivery
    with its move), two on SQLite."""
    deliveries: list[Delivery] = field(default_factory=list)
    advances: list[EnrollmentAdvance] = field(default_factory=list)

    async def flush(self, session: AsyncSession) -> None:
        await repository.add_deliveries_advancing_enrollments(session, self.deliveries, self.advances)
        self.deliveries, self.advances = [], []


class SequenceScheduler:
    def __init__(self, context: Any) -> None:
        self.context = context
        self.settings: Settings = context.settings
        self.clock = context.clock
        # After a batch whose writes together failed: the next batch writes each step on its own, so that the
        # step at fault is found and put off (below) instead of failing every batch it is in.
        self._step_by_step = False

    async def run_once(self) -> bool:
        """Record the due steps' deliveries; whether more may be due at once."""
        now = self.clock.now()
        step_by_step, self._step_by_step = self._step_by_step, False
        async with self.context.uow() as uow:
            due = await repository.claim_due_steps(uow.session, now, self.settings.worker_batch_size)
            if not due:
                return False  # nothing written: nothing to commit
            writes = StepWrites()
            for claimed in due:
                try:
                    await self._step(uow, claimed, now, writes)
                    if step_by_step:
                        await writes.flush(uow.session)
                except Exception:
                    # One broken enrollment must not hold up the others: the batch's work is undone (none of it was
                    # sent: deliveries go out once committed), the broken one is looked at again later and the
                    # others are claimed again by the next tick, at once (no savepoint per step: two statements).
                    log.exception("sequence_step_crashed", enrollment_id=claimed.enrollment.id)
                    await uow.rollback()
                    await repository.postpone_enrollment(uow.session, claimed.enrollment, now + timedelta(minutes=5),
                                                         now)
                    await uow.commit()
                    return True
            try:
                await writes.flush(uow.session)
            except Exception as exc:
                if is_database_outage(exc):
                    raise
                log.exception("sequence_batch_writes_failed", steps=len(due))
                self._step_by_step = True  # nothing of the batch was written: taken again at once, step by step
                return True
            await uow.commit()
        # The steps' deliveries are the delivery worker's work (a tick's own commits ring for no one).
        self.context.commits.ring(source=WORKER)
        # Run again at once only after a full batch: a smaller one took every step due; the next falls due with
        # time (the idle poll) or with a commit that rings.
        return len(due) >= self.settings.worker_batch_size

    async def _step(self, uow: UnitOfWork, claimed: DueStep, now: datetime, writes: StepWrites) -> None:
        session = uow.session
        enrollment, sequence, lead = claimed.enrollment, claimed.sequence, claimed.lead
        if sequence is None or not sequence.active:
            await repository.stop_enrollment(session, enrollment.id, "sequence_inactive", now)
            return
        if lead is None or (lead.lead_version == 0 and not lead.erased):
            # Stage or outcome known but not the lead itself yet (events out of order): look again shortly.
            await repository.postpone_enrollment(session, enrollment, now + timedelta(seconds=10), now)
            return
        reason = still_eligible(sequence.trigger, enrollment.stage_id, lead_state(lead))
        if reason is not None:
            await repository.stop_enrollment(session, enrollment.id, reason, now)
            return
        spec = spec_of(sequence)
        index = enrollment.next_step
        await self._record_step(uow, sequence, enrollment, lead, claimed, spec.steps[index], index, now, writes)
        due = None  # after the last step: completed
        if index + 1 < len(spec.steps):
            due = next_due(now, spec.steps[index + 1], lead_timezone=lead.timezone,
                           hours=business_hours(self.settings),
                           fallback_timezone=sequence.business_timezone or self.settings.default_business_timezone)
        writes.advances.append(EnrollmentAdvance(enrollment_id=enrollment.id, next_step=index + 1, next_due_at=due,
                                                 now=now))

    async def _record_step(self, uow: UnitOfWork, sequence: SequenceRecord, enrollment: Enrollment,
                           lead: KnownLead, claimed: DueStep, step: Step, index: int, now: datetime,
                           writes: StepWrites) -> None:
        """`claimed`: the step's owner and template, read with the claim. A delivery to send is written with the
        batch's (`writes`); a failure at once, since its event is published only when its row is new."""
        owner, template = claimed.owner, claimed.template
        org_id, lead_id = enrollment.org_id, enrollment.lead_id
        common: dict[str, Any]  # of several types: what both outcomes' delivery rows share
        common = dict(org_id=org_id, kind="email", recipient_kind="prospect", reason="sequence", now=now,
                      lead_id=lead_id, rep_id=lead.owner_id, sequence_id=sequence.id,
                      enrollment_id=enrollment.id, step=index, template_id=step.template_id,
                      idem_key=f"sequence:{sequence.id}:lead:{lead_id}:{enrollment.trigger_key}:step:{index}",
                      message_id_domain=self.settings.message_id_domain)
        error = None
        payload = None
        if template is None:
            error = f"template {step.template_id} no longer exists"
        elif not lead.email:
            error = "the lead has no email address"
        else:
            url = unsubscribe_url(self.settings, org_id, lead_id)
            stage = {"id": lead.stage_id, "name": lead.stage_name, "pipeline_id": lead.pipeline_id}
            try:
                payload = email_payload(
                    self.settings, to_name=" ".join(p for p in (lead.first_name, lead.last_name) if p),
                    to_email=lead.email, parts=template.parts(),
                    variables_=variables(org_id=org_id, lead=lead, owner=owner, stage=stage, unsubscribe=url),
                    headers=prospect_headers(url))
            except TemplateError as exc:
                error = f"template {template.name!r} does not render: {exc}"
        if error is None:
            writes.deliveries.append(new_delivery(**common, payload=payload, recipient=lead.email))
            return
        row = await record_delivery(uow.session, **common, payload=None, recipient=lead.email,
                                    status="failed", error=error)
        if row is not None:
            publish_outcome(uow, row, ok=False, now=now, error=error)
        log.warning("sequence_step_failed", sequence_id=sequence.id, lead_id=lead_id, step=index, error=error)


async def sequence_worker(context: Any) -> None:
    await run_periodically(context, SequenceScheduler(context).run_once, context.settings.scheduler_poll_interval_s,
                           wake_on_commit=True,
                           name=WORKER)
