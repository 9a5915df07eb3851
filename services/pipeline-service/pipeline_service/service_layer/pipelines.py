"""Admin work on pipelines: create (from scratch or a template), edit, reorder and delete stages safely.

Leads in flight point at stage ids, which never change: renaming, re-goaling or reordering a stage leaves
them where they are; a stage is only deleted once its leads have been moved to a named target stage.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from salesflow_shared.errors import Conflict, FieldError, NotFound, ValidationFailed
from salesflow_shared.events import PipelineDefinedV1, PipelineStageRef
from salesflow_shared.preconditions import check_if_match as shared_check_if_match
from salesflow_shared.preconditions import strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import PipelineRecord, StageRecord
from ..domain import transitions
from ..domain.definitions import (
    BLANK,
    DefinitionProblems,
    PipelineDef,
    StageDef,
    parse_lost_reasons,
    parse_nurture_days,
    parse_pipeline,
    parse_stage,
)
from ..domain.due_dates import as_int
from . import engine


def problems_to_422(problems: list[tuple[str, str]]) -> ValidationFailed:
    return ValidationFailed("; ".join(f"{p}: {m}" for p, m in problems),
                            errors=[FieldError(p, m) for p, m in problems])


def problems_to_409(problems: list[tuple[str, str]]) -> Conflict:
    return Conflict("; ".join(f"{p}: {m}" for p, m in problems), errors=[FieldError(p, m) for p, m in problems])


def parse_or_422(raw: Any) -> PipelineDef:
    """The definition, or 422 naming each malformed part (409 when well-formed stages clash)."""
    try:
        return parse_pipeline(raw)
    except DefinitionProblems as exc:
        raise (problems_to_409 if exc.conflict else problems_to_422)(exc.problems) from exc


def etag(version: int) -> str:
    return strong_etag(version)


def check_if_match(if_match: str | None, version: int, *, required: bool = True) -> None:
    """Every PATCH and PUT of a pipeline needs the ETag read (428 without it); adding a stage by POST checks it
    only when sent (`required=False`)."""
    if if_match is not None or required:
        shared_check_if_match(if_match, etag(version), what="pipeline")


def _stage_values(stage: StageDef) -> dict[str, Any]:
    return {"name": stage.name, "guidance": stage.guidance, "win_probability": stage.win_probability,
            "is_ask_stage": stage.is_ask_stage, "goal": stage.goal,
            "task_templates": [t.to_json() for t in stage.task_templates]}


async def create_pipeline(uow: UnitOfWork, org_id: str, definition: PipelineDef, now: datetime,
                          template_key: str | None = None) -> str:
    pipeline_id = engine.new_id()
    await repository.add_pipeline(uow.session, PipelineRecord(
        id=pipeline_id, org_id=org_id, name=definition.name, description=definition.description,
        lost_reasons=definition.lost_reasons, nurture_days=definition.nurture_days, template_key=template_key,
        archived=False, version=1, created_at=now, updated_at=now))
    for position, stage in enumerate(definition.stages, start=1):
        await _add_stage(uow, org_id, pipeline_id, stage, position, now)
    await publish_definition(uow, org_id, pipeline_id, now)
    return pipeline_id


async def publish_definition(uow: UnitOfWork, org_id: str, pipeline_id: str, now: datetime) -> None:
    """PipelineDefined with the pipeline as it is now in this transaction (call after the change is written, and
    only for a change of what the event carries: name, stages and their order, archived)."""
    row = await repository.get_pipeline(uow.session, org_id, pipeline_id, archived_too=True)
    assert row is not None  # written in this transaction
    seq = await engine.pipeline_stages(uow, org_id, pipeline_id)
    uow.publish(PipelineDefinedV1(pipeline_id=pipeline_id, name=row.name, archived=row.archived,
                                  stages=[PipelineStageRef(stage_id=s.id, name=s.name) for s in seq]),
                org_id=org_id, subject_id=pipeline_id, subject_version=row.version, occurred_at=now)


async def load_pipeline(uow: UnitOfWork, org_id: str, pipeline_id: str, *, lock: bool = False) -> PipelineRecord:
    row = await repository.get_pipeline(uow.session, org_id, pipeline_id, lock=lock)
    if row is None:
        raise NotFound(f"no pipeline {pipeline_id}")
    return row


def stage_json(s: StageRecord) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "position": s.position, "guidance": s.guidance,
            "win_probability": str(Decimal(s.win_probability).normalize()) if s.win_probability is not None else "0",
            "is_ask_stage": s.is_ask_stage, "goal": s.goal, "task_templates": s.task_templates}


async def pipeline_json(uow: UnitOfWork, org_id: str, pipeline_id: str) -> dict[str, Any]:
    p = await load_pipeline(uow, org_id, pipeline_id)
    seq = await engine.pipeline_stages(uow, org_id, pipeline_id)
    return {"id": p.id, "name": p.name, "description": p.description, "lost_reasons": p.lost_reasons,
            "nurture_days": p.nurture_days, "template_key": p.template_key, "version": p.version,
            "outcomes": ["won", "lost"], "stages": [stage_json(s) for s in seq],
            "created_at": engine.aware(p.created_at).isoformat(), "updated_at": engine.aware(p.updated_at).isoformat()}


async def bump(uow: UnitOfWork, org_id: str, pipeline_id: str, now: datetime, **values: Any) -> None:
    await repository.bump_pipeline(uow.session, org_id, pipeline_id, now, values)


async def _add_stage(uow: UnitOfWork, org_id: str, pipeline_id: str, stage: StageDef, position: int,
                     now: datetime) -> str:
    stage_id = engine.new_id()
    values = _stage_values(stage)
    await repository.add_stage(uow.session, StageRecord(
        id=stage_id, org_id=org_id, pipeline_id=pipeline_id, name=values["name"], position=position,
        guidance=values["guidance"], win_probability=values["win_probability"],
        is_ask_stage=values["is_ask_stage"], goal=values["goal"], task_templates=values["task_templates"],
        deleted=False, created_at=now))
    return stage_id


async def update_pipeline(uow: UnitOfWork, org_id: str, pipeline_id: str, raw: dict[str, Any],
                          if_match: str | None, now: datetime) -> None:
    p = await load_pipeline(uow, org_id, pipeline_id, lock=True)
    check_if_match(if_match, p.version)
    problems: list[tuple[str, str]] = [(k, "unknown field (stages are edited under /stages)") for k in raw
                                       if k not in ("name", "description", "lost_reasons", "nurture_days")]
    values: dict[str, Any] = {}
    if "name" in raw:
        if not isinstance(raw["name"], str) or not raw["name"].strip(BLANK) or len(raw["name"]) > 120:
            problems.append(("name", "must be a non-empty string of at most 120 characters"))
        else:
            values["name"] = raw["name"].strip(BLANK)
    if "description" in raw:
        if not isinstance(raw["description"], str):
            problems.append(("description", "must be a string"))
        else:
            values["description"] = raw["description"]
    if "lost_reasons" in raw:
        values["lost_reasons"] = parse_lost_reasons(raw["lost_reasons"], problems)
    if "nurture_days" in raw:
        values["nurture_days"] = parse_nurture_days(raw["nurture_days"], problems)
    if problems:
        raise problems_to_422(problems)
    await bump(uow, org_id, pipeline_id, now, **values)
    if values.get("name", p.name) != p.name:
        await publish_definition(uow, org_id, pipeline_id, now)


async def add_stage(uow: UnitOfWork, org_id: str, pipeline_id: str, raw: Any, if_match: str | None,
                    now: datetime) -> str:
    p = await load_pipeline(uow, org_id, pipeline_id, lock=True)
    check_if_match(if_match, p.version, required=False)
    seq = await engine.pipeline_stages(uow, org_id, pipeline_id)
    problems: list[tuple[str, str]] = []
    body = dict(raw) if isinstance(raw, dict) else raw
    raw_position = body.pop("position", None) if isinstance(body, dict) else None
    position = as_int(raw_position)
    stage = parse_stage(body, "", problems)
    if raw_position is not None and (position is None or position < 1):
        problems.append(("position", "must be an integer of at least 1 (beyond the last: last)"))
    if problems or stage is None:
        raise problems_to_422(problems)
    _check_stage_clashes(seq, stage, None)
    position = min(position or len(seq) + 1, len(seq) + 1)
    for s in seq:
        if s.position >= position:
            await repository.update_stage(uow.session, org_id, s.id, {"position": s.position + 1})
    stage_id = await _add_stage(uow, org_id, pipeline_id, stage, position, now)
    await bump(uow, org_id, pipeline_id, now)
    await publish_definition(uow, org_id, pipeline_id, now)
    return stage_id


def _check_stage_clashes(seq: list[StageRecord], stage: StageDef, stage_id: str | None,
                         raw: dict[str, Any] | None = None) -> None:
    """409 when a well-formed stage clashes with another stage of the pipeline."""
    clashes: list[tuple[str, str]] = []
    others = [s for s in seq if s.id != stage_id]
    if (raw is None or "name" in raw) and any(s.name.lower() == stage.name.lower() for s in others):
        clashes.append(("name", "two stages of a pipeline cannot share a name"))
    if (raw is None or "is_ask_stage" in raw) and stage.is_ask_stage and any(s.is_ask_stage for s in others):
        clashes.append(("is_ask_stage", "the pipeline already has an ask stage"))
    if clashes:
        raise problems_to_409(clashes)


async def update_stage(uow: UnitOfWork, org_id: str, pipeline_id: str, stage_id: str, raw: Any,
                       if_match: str | None, now: datetime) -> None:
    """Edit a stage in place. Leads in it stay; tasks already created keep their templates' old values;
    a new goal is evaluated at once for the leads in the stage (those it already holds for advance)."""
    p = await load_pipeline(uow, org_id, pipeline_id, lock=True)
    check_if_match(if_match, p.version)
    seq = await engine.pipeline_stages(uow, org_id, pipeline_id)
    if not any(s.id == stage_id for s in seq):
        raise NotFound(f"no stage {stage_id} in pipeline {pipeline_id}")
    if not isinstance(raw, dict):
        raise ValidationFailed.single("body", "must be a JSON object")
    problems: list[tuple[str, str]] = []
    stage = parse_stage(raw, "", problems, partial=True)
    if problems or stage is None:
        raise problems_to_422(problems)
    _check_stage_clashes(seq, stage, stage_id, raw)
    values = {k: v for k, v in _stage_values(stage).items() if k in raw}
    if values:
        await repository.update_stage(uow.session, org_id, stage_id, values)
    await bump(uow, org_id, pipeline_id, now)
    if "name" in values and values["name"] != next(s.name for s in seq if s.id == stage_id):
        await publish_definition(uow, org_id, pipeline_id, now)
    if "goal" in values:
        for lead_id in await repository.leads_in_stage(uow.session, org_id, stage_id):
            pos = await engine.lock_position(uow, org_id, lead_id, now, create=False)
            if pos is not None and pos.stage_id == stage_id and pos.status == "active":
                pos.goal_held = False  # a new goal: judged afresh
                await engine.advance_while_goal_met(uow, pos, now, None)
                await engine.save_position(uow, pos, now)


async def reorder_stages(uow: UnitOfWork, org_id: str, pipeline_id: str, stage_ids: Any, if_match: str | None,
                         now: datetime) -> None:
    p = await load_pipeline(uow, org_id, pipeline_id, lock=True)
    check_if_match(if_match, p.version)
    seq = await engine.pipeline_stages(uow, org_id, pipeline_id)
    if not isinstance(stage_ids, list) or not all(isinstance(s, str) for s in stage_ids):
        raise ValidationFailed.single("stage_ids", "must be a list of stage ids")
    try:
        order = transitions.reorder([s.id for s in seq], stage_ids)
    except ValueError as exc:
        raise ValidationFailed.single("stage_ids", str(exc)) from exc
    for position, sid in enumerate(order, start=1):
        await repository.update_stage(uow.session, org_id, sid, {"position": position})
    await bump(uow, org_id, pipeline_id, now)
    if order != [s.id for s in seq]:
        await publish_definition(uow, org_id, pipeline_id, now)


async def delete_stage(uow: UnitOfWork, org_id: str, pipeline_id: str, stage_id: str, move_to: str | None,
                       moved_by: str, now: datetime) -> int:
    """Delete a stage; its leads go to `move_to` first (required when it holds leads). Returns leads moved."""
    await load_pipeline(uow, org_id, pipeline_id, lock=True)
    seq = await engine.pipeline_stages(uow, org_id, pipeline_id)
    doomed = next((s for s in seq if s.id == stage_id), None)
    if doomed is None:
        raise NotFound(f"no stage {stage_id} in pipeline {pipeline_id}")
    if len(seq) == 1:
        raise Conflict("a pipeline keeps at least one stage; delete the pipeline instead")
    holders = await repository.leads_in_stage(uow.session, org_id, stage_id)
    target = None
    if move_to is not None:
        target = next((s for s in seq if s.id == move_to and s.id != stage_id), None)
        if target is None:
            raise ValidationFailed.single("move_leads_to", "must be another stage of the same pipeline")
    if holders and target is None:
        raise Conflict(f"the stage holds {len(holders)} lead(s): say where they go with ?move_leads_to=<stage id>")
    for lead_id in holders:
        pos = await engine.lock_position(uow, org_id, lead_id, now, create=False)
        if pos is None or pos.stage_id != stage_id or pos.status != "active" or target is None:
            continue
        await engine.enter_stage(uow, pos, pipeline_id, target, reason="manual", now=now, moved_by=moved_by,
                                 note=f"stage '{doomed.name}' was deleted", exit_reason="stage_deleted")
        await engine.save_position(uow, pos, now)
    await repository.update_stage(uow.session, org_id, stage_id, {"deleted": True})
    for position, s in enumerate([s for s in seq if s.id != stage_id], start=1):
        await repository.update_stage(uow.session, org_id, s.id, {"position": position})
    await bump(uow, org_id, pipeline_id, now)
    await publish_definition(uow, org_id, pipeline_id, now)
    return len(holders)


async def archive_pipeline(uow: UnitOfWork, org_id: str, pipeline_id: str, now: datetime) -> None:
    await load_pipeline(uow, org_id, pipeline_id, lock=True)
    busy = await repository.leads_held_by_pipeline(uow.session, org_id, pipeline_id)
    if busy:
        raise Conflict(f"{busy} lead(s) are in or nurtured by this pipeline; move or close them first")
    await bump(uow, org_id, pipeline_id, now, archived=True)
    await publish_definition(uow, org_id, pipeline_id, now)
