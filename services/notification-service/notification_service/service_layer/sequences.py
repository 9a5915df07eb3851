"""Sequence enrollments (the schedule, stored in the database) and the worker that sends due steps.

The worker claims due enrollments with FOR UPDATE SKIP LOCKED, so several replicas share the work without
sending a step twice; in that same transaction it renders the step, records the delivery (pending, with its
idempotency key) and moves the enrollment to its next step. The delivery worker then sends it.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.app import run_periodically
from salesflow_shared.db import rows_affected
from salesflow_shared.inbox import dialect_insert
from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import enrollments, sequences
from ..config import Settings
from ..domain.sequences import SequenceSpec, Step, StopFact, next_due, still_eligible, stop_reason
from ..domain.timing import BusinessHours
from .compose import TemplateError, email_payload, load_template, prospect_headers, unsubscribe_url, variables
from .deliveries import publish_outcome, record_delivery
from .projections import get_lead, get_rep, lead_state

log = structlog.get_logger(__name__)


def spec_of(row: dict[str, Any]) -> SequenceSpec:
    steps = tuple(Step(template_id=s["template_id"], delay=timedelta(minutes=float(s.get("delay_minutes", 0))),
                       business_hours=bool(s.get("business_hours", False))) for s in row["steps"])
    return SequenceSpec(trigger=row["trigger"], steps=steps, pipeline_id=row.get("pipeline_id"),
                        stage_id=row.get("stage_id"), source=row.get("source"))


def business_hours(settings: Settings) -> BusinessHours:
    from datetime import time
    return BusinessHours(days=frozenset(settings.business_days), start=time(settings.business_start_hour),
                         end=time(settings.business_end_hour))


async def active_sequences(session: AsyncSession, org_id: str, trigger: str) -> list[dict[str, Any]]:
    rows = (await session.execute(sa.select(sequences).where(
        sequences.c.org_id == org_id, sequences.c.trigger == trigger, sequences.c.active.is_(True))
        .order_by(sequences.c.created_at))).mappings().all()
    return [dict(r) for r in rows]


async def enroll(session: AsyncSession, settings: Settings, *, sequence: dict[str, Any], lead_id: str,
                 trigger_key: str, stage_id: str | None, now: datetime, lead_timezone: str | None) -> bool:
    """Start the sequence for the lead (once per trigger_key); its first step is due after its delay."""
    spec = spec_of(sequence)
    if not spec.steps:
        return False
    due = next_due(now, spec.steps[0], lead_timezone=lead_timezone, hours=business_hours(settings),
                   fallback_timezone=sequence.get("business_timezone") or settings.default_business_timezone)
    insert = dialect_insert(session)
    result = await session.execute(insert(enrollments).values(
        id=str(uuid.uuid4()), org_id=sequence["org_id"], sequence_id=sequence["id"], lead_id=lead_id,
        trigger_key=trigger_key, stage_id=stage_id, status="active", next_step=0, next_due_at=due,
        created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["org_id", "sequence_id", "lead_id", "trigger_key"]))
    return rows_affected(result) == 1


async def stop_enrollments(session: AsyncSession, *, org_id: str, lead_id: str, fact: StopFact, now: datetime,
                           stage_id: str | None = None) -> int:
    rows = (await session.execute(
        sa.select(enrollments.c.id, enrollments.c.stage_id, sequences.c.trigger)
        .join(sequences, sequences.c.id == enrollments.c.sequence_id)
        .where(enrollments.c.org_id == org_id, enrollments.c.lead_id == lead_id,
               enrollments.c.status == "active"))).all()
    stopped = 0
    for row in rows:
        reason = stop_reason(row.trigger, row.stage_id, fact, stage_id)
        if reason is not None:
            await _stop(session, row.id, reason, now)
            stopped += 1
    return stopped


async def _stop(session: AsyncSession, enrollment_id: str, reason: str, now: datetime) -> None:
    await session.execute(sa.update(enrollments).where(enrollments.c.id == enrollment_id).values(
        status="stopped", stop_reason=reason, next_due_at=None, updated_at=now))


class SequenceScheduler:
    def __init__(self, context: Any) -> None:
        self.context = context
        self.settings: Settings = context.settings
        self.clock = context.extras["clock"]

    async def run_once(self) -> int:
        now = self.clock.now()
        async with self.context.uow() as uow:
            due = (await uow.session.execute(
                sa.select(enrollments).where(enrollments.c.status == "active", enrollments.c.next_due_at <= now)
                .order_by(enrollments.c.next_due_at).limit(self.settings.worker_batch_size)
                .with_for_update(skip_locked=True))).mappings().all()
            for enrollment in due:
                try:
                    async with uow.session.begin_nested():
                        await self._step(uow, dict(enrollment), now)
                except Exception:  # one broken enrollment must not hold up the others: look again later
                    log.exception("sequence_step_crashed", enrollment_id=enrollment["id"])
                    await uow.session.execute(sa.update(enrollments).where(enrollments.c.id == enrollment["id"])
                                              .values(next_due_at=now + timedelta(minutes=5), updated_at=now))
            await uow.commit()
        return len(due)

    async def _step(self, uow: UnitOfWork, enrollment: dict[str, Any], now: datetime) -> None:
        session = uow.session
        found = (await session.execute(sa.select(sequences).where(
            sequences.c.id == enrollment["sequence_id"]))).mappings().first()
        if found is None or not found["active"]:
            await _stop(session, enrollment["id"], "sequence_inactive", now)
            return
        sequence = dict(found)
        lead = await get_lead(session, enrollment["org_id"], enrollment["lead_id"])
        if lead is None or (lead["lead_version"] == 0 and not lead["erased"]):
            # Stage or outcome known but not the lead itself yet (events out of order): look again shortly.
            await session.execute(sa.update(enrollments).where(enrollments.c.id == enrollment["id"]).values(
                next_due_at=now + timedelta(seconds=10), updated_at=now))
            return
        reason = still_eligible(sequence["trigger"], enrollment["stage_id"], lead_state(lead))
        if reason is not None:
            await _stop(session, enrollment["id"], reason, now)
            return
        spec = spec_of(sequence)
        index = enrollment["next_step"]
        await self._record_step(uow, sequence, enrollment, lead, spec.steps[index], index, now)
        if index + 1 < len(spec.steps):
            due = next_due(now, spec.steps[index + 1], lead_timezone=lead.get("timezone"),
                           hours=business_hours(self.settings),
                           fallback_timezone=(sequence.get("business_timezone")
                                              or self.settings.default_business_timezone))
            values: dict[str, Any] = {"next_step": index + 1, "next_due_at": due}
        else:
            values = {"next_step": index + 1, "next_due_at": None, "status": "completed"}
        await session.execute(sa.update(enrollments).where(enrollments.c.id == enrollment["id"])
                              .values(**values, updated_at=now))

    async def _record_step(self, uow: UnitOfWork, sequence: dict[str, Any], enrollment: dict[str, Any],
                           lead: dict[str, Any], step: Step, index: int, now: datetime) -> None:
        org_id, lead_id = enrollment["org_id"], enrollment["lead_id"]
        common = dict(org_id=org_id, kind="email", recipient_kind="prospect", reason="sequence", now=now,
                      lead_id=lead_id, rep_id=lead.get("owner_id"), sequence_id=sequence["id"],
                      enrollment_id=enrollment["id"], step=index, template_id=step.template_id,
                      idem_key=f"sequence:{sequence['id']}:lead:{lead_id}:{enrollment['trigger_key']}:step:{index}",
                      message_id_domain=self.settings.message_id_domain)
        template = await load_template(uow.session, org_id, template_id=step.template_id)
        error = None
        payload = None
        if template is None:
            error = f"template {step.template_id} no longer exists"
        elif not lead.get("email"):
            error = "the lead has no email address"
        else:
            url = unsubscribe_url(self.settings, org_id, lead_id)
            stage = {"id": lead.get("stage_id"), "name": lead.get("stage_name"), "pipeline_id": lead.get("pipeline_id")}
            try:
                payload = email_payload(
                    self.settings, to_name=" ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p),
                    to_email=lead["email"], parts=template,
                    variables_=variables(org_id=org_id, lead=lead, owner=await get_rep(uow.session, org_id,
                                         lead.get("owner_id")), stage=stage, unsubscribe=url),
                    headers=prospect_headers(url))
            except TemplateError as exc:
                error = f"template {template['name']!r} does not render: {exc}"
        if error is None:
            await record_delivery(uow.session, **common, payload=payload, recipient=lead["email"])
            return
        row = await record_delivery(uow.session, **common, payload=None, recipient=lead.get("email"),
                                    status="failed", error=error)
        if row is not None:
            publish_outcome(uow, row, ok=False, now=now, error=error)
        log.warning("sequence_step_failed", sequence_id=sequence["id"], lead_id=lead_id, step=index, error=error)


async def sequence_worker(context: Any) -> None:
    await run_periodically(context, SequenceScheduler(context).run_once, context.settings.scheduler_poll_interval_s,
                           wake_on_commit=True,
                           name="sequences")
