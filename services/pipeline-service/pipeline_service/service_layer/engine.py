"""Moving leads through their pipeline: entering stages, creating/skipping tasks, goal-driven advance,
closing as won/lost, reopening. Used by the event handlers, the HTTP routes and the workers alike.

Every change to one lead happens with its `positions` row locked (SELECT ... FOR UPDATE), so two events
about the same lead handled at once (or an event and an HTTP move) cannot both advance it.
"""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, overload

import structlog

from salesflow_shared.events import (
    LeadLostV1,
    LeadReopenedV1,
    LeadWonV1,
    StageAdvancedV1,
    TaskCreatedV1,
    TaskReassignedV1,
    TaskSkippedV1,
)
from salesflow_shared.uow import UnitOfWork

from ..adapters import calendars, repository
from ..adapters.repository import Activity, Position, StageRecord, TaskRecord
from ..domain import transitions
from ..domain.definitions import TaskTemplate, parse_task_template
from ..domain.due_dates import compute_due
from ..domain.goals import LeadFacts, evaluate_goal, facts_needed

log = structlog.get_logger(__name__)


def new_id() -> str:
    return str(uuid.uuid4())


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# ------------------------------------------------------------------ loading
async def lock_position(uow: UnitOfWork, org_id: str, lead_id: str, now: datetime, *,
                        create: bool = True, along_pipeline: str | None = None) -> Position | None:
    """The lead's row, locked for this transaction; created (partial, `unrouted`) when missing. With
    `along_pipeline`, that pipeline's stages are read along (the lead is about to enter it)."""
    return await repository.lock_position(uow.session, org_id, lead_id, now, create=create,
                                          along_pipeline=along_pipeline)


async def save_position(uow: UnitOfWork, pos: Position, now: datetime) -> None:
    pos.updated_at = now
    await repository.save_position(uow.session, pos)


async def pipeline_stages(uow: UnitOfWork, org_id: str, pipeline_id: str) -> list[StageRecord]:
    return await repository.pipeline_stages(uow.session, org_id, pipeline_id)


async def live_pipeline_stages(uow: UnitOfWork, org_id: str, pipeline_id: str) -> list[StageRecord] | None:
    """The stages of the pipeline if it exists and is not archived, else None."""
    return await repository.live_pipeline_stages(uow.session, org_id, pipeline_id)


async def current_stage(uow: UnitOfWork, pos: Position) -> StageRecord | None:
    """The stage the lead is in (as read with its position, else from its pipeline's stages)."""
    if pos.stage is not None and pos.stage.id == pos.stage_id:
        return pos.stage
    if not pos.pipeline_id:
        return None
    return next((s for s in await pipeline_stages(uow, pos.org_id, pos.pipeline_id) if s.id == pos.stage_id), None)


async def record_activity(uow: UnitOfWork, pos: Position, activity_id: str, kind: str, occurred_at: datetime,
                          now: datetime) -> bool:
    """The lead's activity, stored; False when the activity is known already (under another event id)."""
    if not await repository.add_activity(uow.session, pos.org_id, activity_id, pos.lead_id, kind, occurred_at, now):
        return False
    if pos.activities is not None:  # keep the activities read with the position current
        pos.activities.append(Activity(kind=kind, occurred_at=occurred_at))
    return True


async def lead_facts(uow: UnitOfWork, pos: Position, goal: Any) -> LeadFacts:
    """What `goal` is judged on; only what it looks at is read. The activities are read after the position's lock
    (once per locked position: no other transaction adds one to the lead while it is held)."""
    session = uow.session
    needed = facts_needed(goal)
    rows: list[Activity] = []
    if "activities" in needed:
        if pos.activities is None:
            pos.activities = await repository.activities_of(session, pos.org_id, pos.lead_id)
        rows = pos.activities
    entered = aware(pos.stage_entered_at)
    cycle = aware(pos.cycle_started_at)
    ever: Counter[str] = Counter(r.kind for r in rows if cycle is None or aware(r.occurred_at) >= cycle)
    in_stage: Counter[str] = Counter(r.kind for r in rows if entered is not None and aware(r.occurred_at) >= entered)
    required = (await repository.required_task_statuses(session, pos.org_id, pos.visit_id)
                if "tasks" in needed else [])
    fields = dict(pos.lead or {})
    # The owner known from LeadAssigned is fresher than the snapshot's.
    fields.update({k: v for k, v in (("owner_id", pos.owner_id), ("team_id", pos.team_id)) if v})
    return LeadFacts(fields=fields, activities_ever=dict(ever), activities_in_stage=dict(in_stage),
                     required_tasks_total=len(required),
                     required_tasks_done=sum(1 for status in required if status == "done"))


# ------------------------------------------------------------------ events about the lead
def _next_event_version(pos: Position) -> int:
    version = int(pos.event_version or 0) + 1
    pos.event_version = version
    return version


def _timezone_for(pos: Position) -> str | None:
    return pos.owner_timezone or (pos.lead or {}).get("timezone")


# ------------------------------------------------------------------ tasks
async def stage_tasks(uow: UnitOfWork, pos: Position, stage: StageRecord, now: datetime) -> list[TaskRecord]:
    """The stage's tasks for the lead's current visit (not yet stored)."""
    new_tasks: list[TaskRecord] = []
    for raw in stage.task_templates or []:
        problems: list[tuple[str, str]] = []
        template = parse_task_template(raw, "", problems)
        if template is None:  # stored templates were validated; never let one bad row block a lead
            log.warning("bad_task_template", stage_id=stage.id, problems=problems)
            continue
        new_tasks.append(await new_task(uow, pos, stage, template, now))
    return new_tasks


def announce_tasks(uow: UnitOfWork, stage: StageRecord, new_tasks: list[TaskRecord], now: datetime) -> None:
    """TaskCreated for each of the stage's new tasks."""
    for task in new_tasks:
        uow.publish(TaskCreatedV1(task_id=task.id, lead_id=task.lead_id, pipeline_id=task.pipeline_id,
                                  stage_id=stage.id, title=task.title, task_type=task.task_type,
                                  required=task.required, due_at=task.due_at, assignee_id=task.assignee_id),
                    org_id=task.org_id, subject_id=task.id, subject_version=1, occurred_at=now)


async def new_task(uow: UnitOfWork, pos: Position, stage: StageRecord, template: TaskTemplate,
                   now: datetime) -> TaskRecord:
    """The lead's open task from a template of its current stage (not yet stored)."""
    assignee_id, team_id = pos.owner_id, pos.team_id  # the owner, within the owning team
    if template.assignee_kind == "rep":
        assignee_id = template.assignee_id
    elif template.assignee_kind == "team":
        assignee_id, team_id = None, template.assignee_id
    calendar = (await calendars.load(uow.session, pos.org_id)).calendar
    due_at = compute_due(now, template.due, _timezone_for(pos), calendar)
    return TaskRecord(
        id=new_id(), org_id=pos.org_id, lead_id=pos.lead_id, pipeline_id=pos.pipeline_id,
        stage_id=stage.id, visit_id=pos.visit_id, title=template.title, task_type=template.type,
        required=template.required, assignee_kind=template.assignee_kind, assignee_id=assignee_id,
        team_id=team_id, due_at=due_at, status="open", created_at=now, completed_at=None, completed_by=None,
        skip_reason=None, overdue_at=None, version=1)


async def reassign_task(uow: UnitOfWork, row: TaskRecord, *, assignee_kind: str, assignee_id: str | None,
                        team_id: str | None, reason: str, now: datetime, by: str | None = None) -> None:
    """Give an open task (its locked row) to another assignee; TaskReassigned when the assignee changes."""
    await reassign_tasks(uow, [row], assignee_kind=assignee_kind, assignee_id=assignee_id, team_id=team_id,
                         reason=reason, now=now, by=by)


async def reassign_tasks(uow: UnitOfWork, rows: list[TaskRecord], *, assignee_kind: str, assignee_id: str | None,
                         team_id: str | None, reason: str, now: datetime, by: str | None = None) -> None:
    """Give open tasks (their locked rows) to another assignee, in one statement; TaskReassigned for each task
    whose assignee changes, in the order given. A task that has that assignee already is left as it is (an owner
    confirmed by the LeadAssigned that follows its routing changes nothing)."""
    rows = [row for row in rows if (row.assignee_kind, row.assignee_id, row.team_id) != (
        assignee_kind, assignee_id, team_id)]
    await repository.reassign_tasks(uow.session, rows, assignee_kind=assignee_kind, assignee_id=assignee_id,
                                    team_id=team_id)
    for row in rows:
        if (assignee_id, team_id) != (row.assignee_id, row.team_id):
            _announce_reassignment(uow, row, assignee_id=assignee_id, team_id=team_id, reason=reason, now=now, by=by)


def _announce_reassignment(uow: UnitOfWork, row: TaskRecord, *, assignee_id: str | None, team_id: str | None,
                           reason: str, now: datetime, by: str | None) -> None:
    uow.publish(TaskReassignedV1(task_id=row.id, lead_id=row.lead_id, stage_id=row.stage_id, title=row.title,
                                 required=row.required, due_at=aware(row.due_at),
                                 previous_assignee_id=row.assignee_id, assignee_id=assignee_id, team_id=team_id,
                                 reason=reason, reassigned_by=by),
                org_id=row.org_id, subject_id=row.id, subject_version=row.version + 1, occurred_at=now)


async def skip_open_tasks(uow: UnitOfWork, pos: Position, reason: str, now: datetime, *,
                          visit_only: bool = True) -> int:
    """Skip the lead's open tasks (of its current stage visit, or all of them); TaskSkipped for each."""
    rows = await repository.lock_open_tasks(uow.session, pos.org_id, pos.lead_id, visit_id=pos.visit_id,
                                            visit_only=visit_only)
    for row in rows:
        await repository.skip_task(uow.session, row, reason)
        uow.publish(TaskSkippedV1(task_id=row.id, lead_id=row.lead_id, stage_id=row.stage_id,
                                  assignee_id=row.assignee_id, reason=reason),
                    org_id=row.org_id, subject_id=row.id, subject_version=row.version + 1, occurred_at=now)
    return len(rows)


# ------------------------------------------------------------------ stage moves
async def close_visit(uow: UnitOfWork, pos: Position, exit_reason: str, now: datetime) -> None:
    if pos.visit_id:
        await repository.close_visit(uow.session, pos.visit_id, exit_reason, now)


async def enter_stage(uow: UnitOfWork, pos: Position, pipeline_id: str, stage: StageRecord, *, reason: str,
                      now: datetime, triggering_event_id: str | None = None, moved_by: str | None = None,
                      note: str | None = None, exit_reason: str | None = None) -> None:
    """Leave the current stage (its open tasks skipped), enter `stage`, publish StageAdvanced, create tasks."""
    from_stage = pos.stage_id if pos.status == "active" else None
    from_position = None
    seq = await pipeline_stages(uow, pos.org_id, pipeline_id)
    if from_stage is not None and pos.pipeline_id == pipeline_id:
        # Carried so consumers tell an advance from a move back without the pipeline's definition.
        from_position = next((s.position for s in seq if s.id == from_stage), None)
        if from_position is None:  # a stage deleted meanwhile
            from_position = await repository.stage_position(uow.session, pos.org_id, from_stage)
    if pos.visit_id and pos.status == "active":
        await skip_open_tasks(uow, pos, exit_reason or reason, now)
        await close_visit(uow, pos, exit_reason or reason, now)
    visit_id = new_id()
    pos.status, pos.pipeline_id, pos.stage_id, pos.stage_entered_at = "active", pipeline_id, stage.id, now
    pos.visit_id, pos.reengage_at, pos.lost_reason, pos.closed_at, pos.goal_held = visit_id, None, None, None, False
    pos.stage = stage
    new_tasks = await stage_tasks(uow, pos, stage, now)
    await repository.add_visit(uow.session, visit_id=visit_id, org_id=pos.org_id, lead_id=pos.lead_id,
                               pipeline_id=pipeline_id, stage=stage, now=now, reason=reason,
                               triggering_event_id=triggering_event_id, moved_by=moved_by, note=note,
                               new_tasks=new_tasks)
    version = _next_event_version(pos)
    stage_ids = [s.id for s in seq]
    uow.publish(StageAdvancedV1(
        lead_id=pos.lead_id, pipeline_id=pipeline_id, from_stage_id=from_stage, from_stage_position=from_position,
        to_stage_id=stage.id,
        to_stage_name=stage.name, to_stage_position=stage.position, is_ask_stage=stage.is_ask_stage,
        win_probability=Decimal(stage.win_probability).normalize(), reason=reason,
        triggering_event_id=triggering_event_id,
        moved_by=moved_by, note=note, owner_id=pos.owner_id, entered_at=now, pipeline_stage_ids=stage_ids,
    ), org_id=pos.org_id, subject_id=pos.lead_id, subject_version=version, occurred_at=now)
    announce_tasks(uow, stage, new_tasks, now)
    if reason == "manual":
        # Moved here on purpose: a goal that already holds does not send the lead straight on.
        pos.goal_held = evaluate_goal(stage.goal, await lead_facts(uow, pos, stage.goal))


async def advance_while_goal_met(uow: UnitOfWork, pos: Position, now: datetime,
                                 triggering_event_id: str | None) -> int:
    """Advance stage by stage while the current stage's goal becomes true; returns how many stages were
    passed. A goal that already held at the last evaluation (after a manual move) does not count."""
    if pos.status != "active" or not pos.pipeline_id:
        return 0
    moved = 0
    # The pipeline's stages are read only once the lead moves on (the current stage came with the position).
    seq: list[StageRecord] | None = None
    while seq is None or moved < len(seq):  # at most one pass through the pipeline
        current = await current_stage(uow, pos)
        if current is None:
            break
        met = evaluate_goal(current.goal, await lead_facts(uow, pos, current.goal))
        held, pos.goal_held = pos.goal_held, met
        if not met or held:
            break
        seq = await pipeline_stages(uow, pos.org_id, pos.pipeline_id)
        target = transitions.next_stage(seq, current.id)
        if target is None:
            break  # the last stage is left by closing the lead as won or lost
        await enter_stage(uow, pos, pos.pipeline_id, target, reason="goal_met", now=now,
                          triggering_event_id=triggering_event_id, exit_reason="goal_met")
        moved += 1
    return moved


async def enter_pipeline(uow: UnitOfWork, pos: Position, pipeline_id: str, *, reason: str, now: datetime,
                         triggering_event_id: str | None = None, moved_by: str | None = None) -> bool:
    seq = await pipeline_stages(uow, pos.org_id, pipeline_id)
    first = transitions.first_stage(seq)
    if first is None:
        return False
    await enter_stage(uow, pos, pipeline_id, first, reason=reason, now=now,
                      triggering_event_id=triggering_event_id, moved_by=moved_by, exit_reason="rerouted")
    await advance_while_goal_met(uow, pos, now, triggering_event_id)
    return True


async def leave_pipeline(uow: UnitOfWork, pos: Position, *, status: str, reason: str, now: datetime,
                         keep_pipeline: bool) -> str | None:
    """Close the current stage visit and every open task of the lead; returns the stage it was in."""
    stage_id = pos.stage_id if pos.status == "active" else None
    await skip_open_tasks(uow, pos, reason, now, visit_only=False)
    if pos.status == "active":
        await close_visit(uow, pos, reason, now)
    pos.status, pos.stage_id, pos.stage_entered_at, pos.visit_id, pos.closed_at = status, None, None, None, now
    if not keep_pipeline:
        pos.pipeline_id = None
    return stage_id


async def win(uow: UnitOfWork, pos: Position, *, value: Any, currency: str | None, now: datetime,
              notes: str | None = None) -> None:
    transitions.transition("win", pos.status)
    pipeline_id = pos.pipeline_id
    stage_id = await leave_pipeline(uow, pos, status="won", reason="lead_won", now=now, keep_pipeline=True)
    pos.won_value, pos.won_currency = value, currency
    uow.publish(LeadWonV1(lead_id=pos.lead_id, pipeline_id=pipeline_id, stage_id=stage_id, value=value,
                          currency=currency, owner_id=pos.owner_id, won_at=now, notes=notes),
                org_id=pos.org_id, subject_id=pos.lead_id, subject_version=_next_event_version(pos),
                occurred_at=now)


async def lose(uow: UnitOfWork, pos: Position, *, reason: str, reengage_at: datetime, now: datetime) -> None:
    transitions.transition("lose", pos.status)
    pipeline_id = pos.pipeline_id
    stage_id = await leave_pipeline(uow, pos, status="nurturing", reason="lead_lost", now=now, keep_pipeline=True)
    pos.lost_reason, pos.reengage_at = reason, reengage_at
    uow.publish(LeadLostV1(lead_id=pos.lead_id, pipeline_id=pipeline_id, stage_id=stage_id, reason=reason,
                           owner_id=pos.owner_id, lost_at=now, reengage_at=reengage_at),
                org_id=pos.org_id, subject_id=pos.lead_id, subject_version=_next_event_version(pos),
                occurred_at=now)


async def reopen(uow: UnitOfWork, pos: Position, now: datetime, *, pipeline_id: str | None = None,
                 reason: str = "reopened", triggering_event_id: str | None = None) -> bool:
    """A nurtured lead comes back (its re-engage date came, or a new routing brought it): LeadReopened, then
    StageAdvanced into the first stage of its pipeline (or of `pipeline_id`)."""
    transitions.transition("reopen", pos.status)
    pipeline_id = pipeline_id or pos.pipeline_id
    if not pipeline_id or await live_pipeline_stages(uow, pos.org_id, pipeline_id) is None:
        log.warning("reopen_without_pipeline", lead_id=pos.lead_id, pipeline_id=pipeline_id)
        pos.reengage_at = None  # stays nurturing; a new routing can bring it back
        return False
    uow.publish(LeadReopenedV1(lead_id=pos.lead_id, pipeline_id=pipeline_id, reopened_at=now),
                org_id=pos.org_id, subject_id=pos.lead_id, subject_version=_next_event_version(pos),
                occurred_at=now)
    pos.status = "reopening"  # not active: enter_stage must not close a visit that is already closed
    pos.cycle_started_at = now  # the new cycle's goals count what happens from now on
    if not await enter_pipeline(uow, pos, pipeline_id, reason=reason, now=now,
                                triggering_event_id=triggering_event_id):
        pos.status, pos.reengage_at = "nurturing", None
        return False
    return True
