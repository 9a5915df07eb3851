"""Background sweeps: overdue tasks (TaskOverdue once per task) and nurtured leads due to reopen.

Both are safe with several replicas: candidate rows are claimed with `FOR UPDATE SKIP LOCKED` and the
state change (overdue_at set / status changed) commits in the same transaction as the outbox rows, so a
row another replica is handling is skipped, and a committed one no longer matches.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import structlog

from salesflow_shared.app import ServiceContext, run_periodically
from salesflow_shared.clock import Clock, SystemClock
from salesflow_shared.db import rows_affected
from salesflow_shared.events import TaskOverdueV1

from ..adapters.orm import positions, tasks
from ..config import Settings
from . import engine

log = structlog.get_logger(__name__)


def clock_of(context: ServiceContext) -> Clock:
    return context.extras.get("clock") or SystemClock()


async def sweep_overdue(context: ServiceContext, now: datetime | None = None, batch: int = 200) -> int:
    """Emit TaskOverdue for open tasks past due that have not had one; returns how many were emitted."""
    now = now or clock_of(context).now()
    emitted = 0
    while True:
        async with context.uow() as uow:
            rows = (await uow.session.execute(
                sa.select(tasks).where(tasks.c.status == "open", tasks.c.overdue_at.is_(None), tasks.c.due_at <= now)
                .order_by(tasks.c.due_at, tasks.c.id).limit(batch).with_for_update(skip_locked=True))).all()
            for row in rows:
                claimed = await uow.session.execute(sa.update(tasks).where(
                    tasks.c.id == row.id, tasks.c.overdue_at.is_(None), tasks.c.status == "open",
                ).values(overdue_at=now, version=tasks.c.version + 1))
                if rows_affected(claimed) != 1:
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
            keys = (await uow.session.execute(
                sa.select(positions.c.org_id, positions.c.lead_id)
                .where(positions.c.status == "nurturing", positions.c.reengage_at <= now)
                .order_by(positions.c.reengage_at).limit(batch).with_for_update(skip_locked=True))).all()
            for key in keys:
                pos = await engine.lock_position(uow, key.org_id, key.lead_id, now, create=False)
                if pos is None or pos["status"] != "nurturing":
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
