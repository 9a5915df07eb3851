"""What a rep or manager does to a lead or a task by hand: move it to a stage, close it as won or lost, complete
or hand over a task.

Each use case takes the unit of work and the caller (a rep changes only what it owns now: 404 for what it never
saw, 403 for what it owned before), writes in the transaction and publishes through the outbox without
committing: the caller stores its idempotent answer in the same transaction and commits once.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from salesflow_shared.auth import Principal
from salesflow_shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from salesflow_shared.events import TaskCompletedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain import transitions
from . import engine
from .views import load_visible_position


async def _lock_for_change(uow: UnitOfWork, principal: Principal, lead_id: str, now: datetime) -> repository.Position:
    # 404 for other orgs' and other reps' leads, 403 for a lead the rep owned before (read-only)
    await load_visible_position(uow, principal, lead_id, to_change=True)
    pos = await engine.lock_position(uow, principal.org_id, lead_id, now, create=False)
    assert pos is not None
    return pos


def _refused(exc: transitions.TransitionRefused) -> Conflict:
    what = "moved" if exc.action == "move" else exc.action + " now"
    return Conflict(f"the lead is {exc.status}: it cannot be {what}")


async def move_lead(uow: UnitOfWork, principal: Principal, lead_id: str, *, to_stage_id: str, note: str,
                    now: datetime) -> None:
    """Move an active lead to another stage of its pipeline (forward, back or skipping), recorded as `manual`
    with the caller and its note; the goals of the stage it lands in may carry it further at once."""
    pos = await _lock_for_change(uow, principal, lead_id, now)
    try:
        transitions.transition("move", pos.status)
    except transitions.TransitionRefused as exc:
        raise _refused(exc) from exc
    pipeline_id = pos.pipeline_id
    assert pipeline_id is not None  # an active lead is in a pipeline
    seq = await engine.pipeline_stages(uow, principal.org_id, pipeline_id)
    target = next((s for s in seq if s.id == to_stage_id), None)
    if target is None:
        raise ValidationFailed.single("to_stage_id", "must be a stage of the lead's pipeline")
    if target.id == pos.stage_id:
        raise Conflict("the lead is already in that stage")
    await engine.enter_stage(uow, pos, pipeline_id, target, reason="manual", now=now, moved_by=principal.user_id,
                             note=note.strip(), exit_reason="manual")
    await engine.advance_while_goal_met(uow, pos, now, None)
    await engine.save_position(uow, pos, now)


async def mark_won(uow: UnitOfWork, principal: Principal, lead_id: str, *, value: Decimal, currency: str,
                   notes: str | None, now: datetime) -> None:
    """Close the lead as won with its final value (LeadWon), handing the customer over with the notes."""
    pos = await _lock_for_change(uow, principal, lead_id, now)
    try:
        await engine.win(uow, pos, value=value, currency=currency, now=now, notes=notes)
    except transitions.TransitionRefused as exc:
        raise _refused(exc) from exc
    await engine.save_position(uow, pos, now)


async def mark_lost(uow: UnitOfWork, principal: Principal, lead_id: str, *, reason: str,
                    reengage_at: datetime | None, now: datetime) -> None:
    """Close the lead as lost with one of its pipeline's lost reasons (any reason when the pipeline lists none);
    it goes to nurturing until `reengage_at` (default: the pipeline's nurture days)."""
    pos = await _lock_for_change(uow, principal, lead_id, now)
    if not transitions.can("lose", pos.status):
        raise _refused(transitions.TransitionRefused("lose", pos.status))
    pipeline = await repository.get_pipeline(uow.session, principal.org_id, pos.pipeline_id, archived_too=True) \
        if pos.pipeline_id else None
    allowed = list(pipeline.lost_reasons or []) if pipeline else []
    reason = reason.strip()
    if allowed and reason.lower() not in {r.lower() for r in allowed}:
        raise ValidationFailed.single("reason", f"must be one of: {', '.join(allowed)}")
    try:
        plan = transitions.plan_nurture(now, reengage_at, pipeline.nurture_days if pipeline else 90)
    except ValueError as exc:
        raise ValidationFailed.single("reengage_at", str(exc)) from exc
    await engine.lose(uow, pos, reason=reason, reengage_at=plan.reengage_at, now=now)
    await engine.save_position(uow, pos, now)


async def visible_task(uow: UnitOfWork, principal: Principal, task_id: str, *, lock: bool = False,
                       to_change: bool = False) -> repository.TaskRecord:
    """A task the caller may see: a rep sees its own, those of the leads it owns and its team's unassigned ones;
    those of a lead it owned before are read-only for it (403 with `to_change`); any other is a 404."""
    row = await repository.get_task(uow.session, principal.org_id, task_id, lock=lock)
    if row is None:
        raise NotFound(f"no task {task_id}")
    if not principal.sees_whole_org and row.assignee_id != principal.user_id:
        owner = await repository.owner_of(uow.session, principal.org_id, row.lead_id)
        if owner != principal.user_id and not (row.assignee_id is None and row.team_id):
            # a rep that owned the lead before reads its tasks, and changes none
            if await repository.owned_lead_before(uow.session, principal, row.lead_id):
                if to_change:
                    raise Forbidden(f"task {task_id} is read-only for you: you no longer own its lead")
                return row
            raise NotFound(f"no task {task_id}")
    return row


async def written_task(uow: UnitOfWork, org_id: str, task_id: str) -> repository.TaskRecord:
    """A task as this transaction just wrote it."""
    task = await repository.get_task(uow.session, org_id, task_id)
    assert task is not None
    return task


async def complete_task(uow: UnitOfWork, principal: Principal, task_id: str, now: datetime) -> repository.TaskRecord:
    """Complete an open task (TaskCompleted); the stage's goal it may meet moves the lead on at once."""
    task = await visible_task(uow, principal, task_id, to_change=True)
    # Lock order everywhere: the lead's position, then its tasks.
    pos = await engine.lock_position(uow, principal.org_id, task.lead_id, now, create=False)
    task = await visible_task(uow, principal, task_id, lock=True, to_change=True)
    if task.status != "open":
        raise Conflict(f"the task is {task.status}")
    await repository.complete_task(uow.session, task, principal.user_id, now)
    envelope = uow.publish(TaskCompletedV1(task_id=task_id, lead_id=task.lead_id, stage_id=task.stage_id,
                                           required=task.required, assignee_id=task.assignee_id,
                                           completed_by=principal.user_id, completed_at=now),
                           org_id=principal.org_id, subject_id=task_id, subject_version=task.version + 1,
                           occurred_at=now)
    if pos is not None:
        await engine.advance_while_goal_met(uow, pos, now, str(envelope.id))
        await engine.save_position(uow, pos, now)
    return await written_task(uow, principal.org_id, task_id)


async def hand_over_task(uow: UnitOfWork, principal: Principal, task_id: str, *, assignee_id: str | None,
                         team_id: str | None, now: datetime) -> repository.TaskRecord:
    """Give an open task to another rep (`assignee_id`) or a team (`team_id`), recorded as `manual`."""
    task = await visible_task(uow, principal, task_id, lock=True, to_change=True)
    if task.status != "open":
        raise Conflict(f"the task is {task.status}")
    await engine.reassign_task(uow, task, assignee_kind="rep" if assignee_id else "team", assignee_id=assignee_id,
                               team_id=team_id, reason="manual", now=now, by=principal.user_id)
    return await written_task(uow, principal.org_id, task_id)
