"""Background sweeps: overdue tasks (TaskOverdue once per task) and nurtured leads due to reopen.

Both are safe with several replicas: candidate rows are claimed with `FOR UPDATE SKIP LOCKED` and the
state change (overdue_at set / status changed) commits in the same transaction as the outbox rows, so a
row another replica is handling is skipped, and a committed one no longer matches.
"""
from __future__ import annotations

from datetime import datetime

import structlog

from salesflow_shared.app import ServiceContext, run_periodically
from salesflow_shared.clock import Clock
from salesflow_shared.events import TaskOverdueV1

from ..adapters import repository
from ..config import Settings
from . import engine

log = structlog.get_logger(__name__)


def clock_of(context: ServiceContext) -> Clock:
    return context.clock


async def sweep_overdue(context: ServiceContext, now: datetime | None = None, batch: int = 200) -> int:
    """Emit TaskOverdue for open tasks past due that have not had one; returns how many were emitted."""
    now = now or clock_of(context).now()
    emitted = 0
    while True:
        async with context.uow() as uow:
            rows = await repository.claim_overdue_tasks(uow.session, now, batch)
            for row in rows:
                if not await repository.mark_overdue(uow.session, row.id, now):
                    continue
                uow.publish(TaskOverdueV1(task_id=row.id, lead_id=row.lead_id, stage_id=row.stage_id,
                                          title=row.title, required=row.required,
                                          assignee_id=row.assignee_id,
                                          due_at=engine.aware(row.due_at)),
                            org_id=row.org_id, subject_id=row.id, subject_version=row.version + 1, occurred_at=now)
                emitted += 1
            await uow.commit()
        if len(rows) < batch:
            return emitted


async def reopen_due_leads(context: ServiceContext, now: datetime | None = None, batch: int = 100) -> int:
    """Nurtured leads whose re-engage date has come re-enter their pipeline; returns how many did."""
    now = now or clock_of(context).now()
    reopened = 0
    while True:
        async with context.uow() as uow:
            keys = await repository.claim_leads_due_to_reopen(uow.session, now, batch)
            for org_id, lead_id in keys:
                pos = await engine.lock_position(uow, org_id, lead_id, now, create=False)
                if pos is None or pos.status != "nurturing":
                    continue
                if await engine.reopen(uow, pos, now):
                    reopened += 1
                await engine.save_position(uow, pos, now)
            await uow.commit()
        if len(keys) < batch:
            return reopened


async def overdue_worker(context: ServiceContext) -> None:
    async def tick() -> None:
        if count := await sweep_overdue(context):
            log.info("tasks_overdue", count=count)
    await run_periodically(context, tick, context.settings_as(Settings).overdue_sweep_interval_s, "overdue_sweep")


async def reopen_worker(context: ServiceContext) -> None:
    async def tick() -> None:
        if count := await reopen_due_leads(context):
            log.info("leads_reopened", count=count)
    await run_periodically(context, tick, context.settings_as(Settings).reopen_interval_s, "reopen_sweep")
