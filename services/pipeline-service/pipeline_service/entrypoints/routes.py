"""The service's HTTP API (docs/architecture.md: /v1/pipelines, /v1/positions, /v1/tasks)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, Principal
from salesflow_shared.contract import returns
from salesflow_shared.currency import ExactCurrencyCode
from salesflow_shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from salesflow_shared.events import TaskCompletedV1
from salesflow_shared.idempotency import IdempotencyDep, IdempotentRequest
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain import transitions
from ..domain.definitions import BLANK
from ..domain.templates import TEMPLATES
from ..service_layer import engine
from ..service_layer import pipelines as admin
from ..service_layer.views import load_visible_position, position_json, task_json
from . import responses as R
from . import schemas

# Text PostgreSQL cannot store (NUL, lone surrogates) is refused by the shared guard before any route runs.
router = APIRouter(prefix="/v1", tags=["pipeline-service"])

IfMatch = Annotated[str | None, Header(alias="If-Match")]
PIPELINE_EXAMPLE = {
    "name": "Inbound", "lost_reasons": ["no budget"], "nurture_days": 30,
    "stages": [{"name": "Qualify", "guidance": "Hold a **short** call.", "win_probability": 0.1,
                "goal": {"all": [{"activity": "meeting", "min_count": 1}, {"field": "value", "op": "gt", "value": 0}]},
                "task_templates": [{"title": "Call", "type": "call", "required": True,
                                    "due": {"amount": 2, "unit": "business_days"}, "assignee": {"kind": "owner"}}]},
               {"name": "Decide", "is_ask_stage": True}],
}


def now_of(context: Any) -> datetime:
    return context.clock.now()


async def _finish(uow: UnitOfWork, idem: IdempotentRequest, status_code: int, body: Any,
                  headers: dict[str, str] | None = None) -> JSONResponse:
    response = await idem.complete(uow.session, status_code=status_code, body=body, headers=headers)
    await uow.commit()
    return response


async def _pipeline_response(uow: UnitOfWork, org_id: str, pipeline_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    body = await admin.pipeline_json(uow, org_id, pipeline_id)
    return body, {"ETag": admin.etag(body["version"])}


# Keyset cursors: "<microseconds since the epoch>.<row id>" — opaque to clients, and every string matching
# the documented pattern is a valid position, so no well-formed cursor is ever refused.
CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
KeysetCursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN,
                                           description="Opaque cursor from the previous page's next_cursor")]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encode_keyset(moment: datetime, row_id: str) -> str:
    delta = engine.aware(moment) - EPOCH
    return f"{(delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds}.{row_id}"


def _keyset_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    micros, _, row_id = cursor.partition(".")
    return EPOCH + timedelta(microseconds=int(micros)), row_id


# ------------------------------------------------------------------ pipelines
@router.get("/pipelines/templates", summary="Ready-made pipelines an admin can instantiate",
            operation_id="listPipelineTemplates", **returns(R.PipelineTemplatePage))
async def list_templates(principal: CurrentPrincipal, limit: LimitParam = 50,
                         cursor: CursorParam = None) -> dict[str, Any]:
    after = decode_cursor(cursor, 1)
    keys = [key for key in sorted(TEMPLATES) if after is None or key > str(after[0])]
    page = [{"key": key, "name": TEMPLATES[key]["name"], "description": TEMPLATES[key]["description"],
             "stages": [s["name"] for s in TEMPLATES[key]["stages"]]} for key in keys[:limit]]
    return {"items": page, "next_cursor": encode_cursor([keys[limit - 1]]) if len(keys) > limit else None}


class InstantiateIn(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=120)


@router.post("/pipelines/templates/{key}/instantiate", status_code=201,
             summary="Create a pipeline from a template (editable afterwards like any other)",
             operation_id="instantiatePipelineTemplate", **returns(R.PipelineOut, status=201, etag=True))
async def instantiate_template(key: str, principal: AdminPrincipal, uow: UowDep, context: ContextDep,
                               idem: IdempotencyDep, body: InstantiateIn | None = None) -> JSONResponse:
    template = TEMPLATES.get(key)
    if template is None:
        raise NotFound(f"no pipeline template {key}; see GET /v1/pipelines/templates")
    payload = body.model_dump() if body else {}
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope="instantiate", payload=payload)):
        return replay
    definition = admin.parse_or_422(template)
    if (payload.get("name") or "").strip(BLANK):
        definition.name = payload["name"].strip(BLANK)
    pipeline_id = await admin.create_pipeline(uow, principal.org_id, definition, now_of(context), template_key=key)
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    return await _finish(uow, idem, 201, out, headers)


@router.post("/pipelines", status_code=201, summary="Create a pipeline with its ordered stages",
             openapi_extra=schemas.body(schemas.PIPELINE, PIPELINE_EXAMPLE),
             operation_id="createPipeline", **returns(R.PipelineOut, status=201, etag=True))
async def create_pipeline(principal: AdminPrincipal, uow: UowDep, context: ContextDep, idem: IdempotencyDep,
                          body: Annotated[Any, Body()]) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope="pipelines", payload=body)):
        return replay
    definition = admin.parse_or_422(body)
    pipeline_id = await admin.create_pipeline(uow, principal.org_id, definition, now_of(context))
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    return await _finish(uow, idem, 201, out, headers)


@router.get("/pipelines", summary="The org's pipelines", operation_id="listPipelines", **returns(R.PipelinePage))
async def list_pipelines(principal: CurrentPrincipal, uow: UowDep, limit: LimitParam = 50,
                         cursor: KeysetCursor = None) -> dict[str, Any]:
    rows = await repository.pipelines_page(uow.session, principal.org_id, _keyset_cursor(cursor), limit)
    items = [await admin.pipeline_json(uow, principal.org_id, r.id) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = _encode_keyset(last.created_at, last.id)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/pipelines/{pipeline_id}", summary="A pipeline with its stages (ETag)",
            operation_id="getPipeline", **returns(R.PipelineOut, etag=True))
async def get_pipeline(pipeline_id: str, principal: CurrentPrincipal, uow: UowDep,
                       response: Response) -> dict[str, Any]:
    body, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    response.headers.update(headers)
    return body


@router.patch("/pipelines/{pipeline_id}", summary="Rename, describe, set lost reasons or nurture days (If-Match)",
              openapi_extra=schemas.body(schemas.PIPELINE_PATCH),
              operation_id="updatePipeline", **returns(R.PipelineOut, etag=True))
async def patch_pipeline(pipeline_id: str, principal: AdminPrincipal, uow: UowDep, context: ContextDep,
                         body: Annotated[Any, Body()], if_match: IfMatch = None) -> JSONResponse:
    if not isinstance(body, dict):
        raise ValidationFailed.single("body", "must be a JSON object")
    await admin.update_pipeline(uow, principal.org_id, pipeline_id, body, if_match, now_of(context))
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    await uow.commit()
    return JSONResponse(out, headers=headers)


@router.delete("/pipelines/{pipeline_id}", status_code=204, summary="Archive a pipeline no lead is in",
               operation_id="archivePipeline")
async def delete_pipeline(pipeline_id: str, principal: AdminPrincipal, uow: UowDep, context: ContextDep) -> Response:
    await admin.archive_pipeline(uow, principal.org_id, pipeline_id, now_of(context))
    await uow.commit()
    return Response(status_code=204)


@router.post("/pipelines/{pipeline_id}/stages", status_code=201,
             summary="Add a stage (at `position`, default last)", openapi_extra=schemas.body(schemas.NEW_STAGE),
             operation_id="addStage", **returns(R.PipelineOut, status=201, etag=True))
async def add_stage(pipeline_id: str, principal: AdminPrincipal, uow: UowDep, context: ContextDep,
                    idem: IdempotencyDep, body: Annotated[Any, Body()], if_match: IfMatch = None) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"stages:{pipeline_id}",
                                   payload=body)):
        return replay
    await admin.add_stage(uow, principal.org_id, pipeline_id, body, if_match, now_of(context))
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    return await _finish(uow, idem, 201, out, headers)


@router.patch("/pipelines/{pipeline_id}/stages/{stage_id}",
              summary="Edit a stage; leads in it stay where they are (If-Match)",
              openapi_extra=schemas.body(schemas.STAGE_PATCH),
              operation_id="updateStage", **returns(R.PipelineOut, etag=True))
async def patch_stage(pipeline_id: str, stage_id: str, principal: AdminPrincipal, uow: UowDep, context: ContextDep,
                      body: Annotated[Any, Body()], if_match: IfMatch = None) -> JSONResponse:
    await admin.update_stage(uow, principal.org_id, pipeline_id, stage_id, body, if_match, now_of(context))
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    await uow.commit()
    return JSONResponse(out, headers=headers)


class StageOrderIn(BaseModel):
    stage_ids: list[str]


@router.put("/pipelines/{pipeline_id}/stage-order", summary="Reorder stages (every stage, once) (If-Match)",
            operation_id="reorderStages", **returns(R.PipelineOut, etag=True, checked_beyond_schema=("stage_ids",)))
async def reorder(pipeline_id: str, body: StageOrderIn, principal: AdminPrincipal, uow: UowDep,
                  context: ContextDep, if_match: IfMatch = None) -> JSONResponse:
    await admin.reorder_stages(uow, principal.org_id, pipeline_id, body.stage_ids, if_match, now_of(context))
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    await uow.commit()
    return JSONResponse(out, headers=headers)


@router.delete("/pipelines/{pipeline_id}/stages/{stage_id}",
               summary="Delete a stage; a stage holding leads needs ?move_leads_to=<stage id>",
               operation_id="deleteStage", **returns(R.StageDeleted, etag=True))
async def delete_stage(pipeline_id: str, stage_id: str, principal: AdminPrincipal, uow: UowDep, context: ContextDep,
                       move_leads_to: str | None = None) -> JSONResponse:
    moved = await admin.delete_stage(uow, principal.org_id, pipeline_id, stage_id, move_leads_to,
                                     principal.user_id, now_of(context))
    out, headers = await _pipeline_response(uow, principal.org_id, pipeline_id)
    await uow.commit()
    return JSONResponse({"leads_moved": moved, "pipeline": out}, headers=headers)


# ------------------------------------------------------------------ positions
PositionStatus = Annotated[str | None, Query(pattern="^(unrouted|active|won|nurturing|disqualified)$")]


@router.get("/positions", summary="Leads by pipeline and stage (a board); reps see the leads they own or owned",
            operation_id="listPositions", **returns(R.PositionSummaryPage))
async def list_positions(principal: CurrentPrincipal, uow: UowDep, limit: LimitParam = 50, cursor: CursorParam = None,
                         pipeline_id: str | None = None, stage_id: str | None = None,
                         status: PositionStatus = None, owner_id: str | None = None) -> dict[str, Any]:
    filters = {"pipeline_id": pipeline_id, "stage_id": stage_id, "status": status, "owner_id": owner_id}
    after = decode_cursor(cursor, 1)  # a cursor this API did not issue is a 422, never an empty page
    rows = await repository.positions_page(uow.session, principal, filters,
                                           str(after[0]) if after is not None else None, limit)
    items = [{"lead_id": r.lead_id, "status": r.status, "pipeline_id": r.pipeline_id, "stage_id": r.stage_id,
              "stage_entered_at": engine.aware(r.stage_entered_at).isoformat() if r.stage_entered_at else None,
              "owner_id": r.owner_id, "team_id": r.team_id,
              "reengage_at": engine.aware(r.reengage_at).isoformat() if r.reengage_at else None}
             for r in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor([rows[limit - 1].lead_id]) if len(rows) > limit else None}


@router.get("/positions/{lead_id}", summary="Where a lead stands: stage, guidance, open tasks and history",
            operation_id="getPosition", **returns(R.PositionOut))
async def get_position(lead_id: str, principal: CurrentPrincipal, uow: UowDep, context: ContextDep) -> dict[str, Any]:
    return await position_json(uow, principal, lead_id, now_of(context))


async def _lock_for_change(uow: UnitOfWork, principal: Principal, lead_id: str,
                           now: datetime) -> repository.Position:
    # 404 for other orgs' and other reps' leads, 403 for a lead the rep owned before (read-only)
    await load_visible_position(uow, principal, lead_id, to_change=True)
    pos = await engine.lock_position(uow, principal.org_id, lead_id, now, create=False)
    assert pos is not None
    return pos


def _refused(exc: transitions.TransitionRefused) -> Conflict:
    what = "moved" if exc.action == "move" else exc.action + " now"
    return Conflict(f"the lead is {exc.status}: it cannot be {what}")


class MoveIn(BaseModel):
    to_stage_id: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=1000)


@router.post("/positions/{lead_id}/move", summary="Move a lead by hand (forward, back or skipping), with a reason",
             operation_id="moveLead", **returns(R.PositionOut))
async def move(lead_id: str, body: MoveIn, principal: CurrentPrincipal, uow: UowDep, context: ContextDep,
               idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"move:{lead_id}",
                                   payload=body.model_dump())):
        return replay
    now = now_of(context)
    pos = await _lock_for_change(uow, principal, lead_id, now)
    try:
        transitions.transition("move", pos.status)
    except transitions.TransitionRefused as exc:
        raise _refused(exc) from exc
    pipeline_id = pos.pipeline_id
    assert pipeline_id is not None  # an active lead is in a pipeline
    seq = await engine.pipeline_stages(uow, principal.org_id, pipeline_id)
    target = next((s for s in seq if s.id == body.to_stage_id), None)
    if target is None:
        raise ValidationFailed.single("to_stage_id", "must be a stage of the lead's pipeline")
    if target.id == pos.stage_id:
        raise Conflict("the lead is already in that stage")
    await engine.enter_stage(uow, pos, pipeline_id, target, reason="manual", now=now,
                             moved_by=principal.user_id, note=body.reason.strip(), exit_reason="manual")
    await engine.advance_while_goal_met(uow, pos, now, None)
    await engine.save_position(uow, pos, now)
    return await _finish(uow, idem, 200, await position_json(uow, principal, lead_id, now))


class WonIn(BaseModel):
    value: str = Field(pattern=r"^(0|[1-9][0-9]{0,13})(\.[0-9]{1,2})?$",
                       description="the final value: a decimal string (money travels as strings)")
    currency: ExactCurrencyCode
    notes: str | None = Field(default=None, max_length=5000,
                              description="the deal's notes for the account manager taking the customer over")


@router.post("/positions/{lead_id}/won", summary="Close a lead as won with its final value",
             operation_id="markLeadWon", **returns(R.PositionOut))
async def won(lead_id: str, body: WonIn, principal: CurrentPrincipal, uow: UowDep, context: ContextDep,
              idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"won:{lead_id}",
                                   payload=body.model_dump(mode="json"))):
        return replay
    now = now_of(context)
    pos = await _lock_for_change(uow, principal, lead_id, now)
    try:
        await engine.win(uow, pos, value=Decimal(body.value), currency=body.currency, now=now, notes=body.notes)
    except transitions.TransitionRefused as exc:
        raise _refused(exc) from exc
    await engine.save_position(uow, pos, now)
    return await _finish(uow, idem, 200, await position_json(uow, principal, lead_id, now))


class LostIn(BaseModel):
    reason: str = Field(min_length=1, max_length=100)
    reengage_at: datetime | None = None


@router.post("/positions/{lead_id}/lost",
             summary="Close a lead as lost (reason from the pipeline's list); it goes to nurturing",
             operation_id="markLeadLost", **returns(R.PositionOut))
async def lost(lead_id: str, body: LostIn, principal: CurrentPrincipal, uow: UowDep, context: ContextDep,
               idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"lost:{lead_id}",
                                   payload=body.model_dump(mode="json"))):
        return replay
    now = now_of(context)
    pos = await _lock_for_change(uow, principal, lead_id, now)
    if not transitions.can("lose", pos.status):
        raise _refused(transitions.TransitionRefused("lose", pos.status))
    pipeline = await repository.get_pipeline(uow.session, principal.org_id, pos.pipeline_id, archived_too=True) \
        if pos.pipeline_id else None
    allowed = list(pipeline.lost_reasons or []) if pipeline else []
    reason = body.reason.strip()
    if allowed and reason.lower() not in {r.lower() for r in allowed}:
        raise ValidationFailed.single("reason", f"must be one of: {', '.join(allowed)}")
    try:
        plan = transitions.plan_nurture(now, body.reengage_at, pipeline.nurture_days if pipeline else 90)
    except ValueError as exc:
        raise ValidationFailed.single("reengage_at", str(exc)) from exc
    await engine.lose(uow, pos, reason=reason, reengage_at=plan.reengage_at, now=now)
    await engine.save_position(uow, pos, now)
    return await _finish(uow, idem, 200, await position_json(uow, principal, lead_id, now))


# ------------------------------------------------------------------ tasks
@router.get("/tasks", summary="A rep's tasks by due date, overdue first",
            operation_id="listTasks", **returns(R.TaskPage))
async def list_tasks(principal: CurrentPrincipal, uow: UowDep, context: ContextDep, limit: LimitParam = 50,
                     cursor: KeysetCursor = None,
                     assignee_id: Annotated[str | None, Query(
                         description="Default: yourself. Managers may name any rep.")] = None,
                     status: Annotated[str, Query(pattern="^(open|done|skipped|all)$")] = "open",
                     lead_id: str | None = None, team_id: str | None = None) -> dict[str, Any]:
    now = now_of(context)
    if not principal.sees_whole_org:
        if assignee_id not in (None, principal.user_id):
            raise NotFound("reps see their own tasks")
        assignee_id = principal.user_id
    # Ordered by due time: overdue tasks (the earliest) come first.
    rows = await repository.tasks_page(uow.session, principal.org_id, assignee_id=assignee_id, team_id=team_id,
                                       status=None if status == "all" else status, lead_id=lead_id,
                                       after=_keyset_cursor(cursor), limit=limit)
    items = [task_json(r, now) for r in rows[:limit]]
    next_cursor = _encode_keyset(rows[limit - 1].due_at, rows[limit - 1].id) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


async def _visible_task(uow: UnitOfWork, principal: Principal, task_id: str, *, lock: bool = False,
                        to_change: bool = False) -> repository.TaskRecord:
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


@router.get("/tasks/{task_id}", summary="One task", operation_id="getTask", **returns(R.TaskOut))
async def get_task(task_id: str, principal: CurrentPrincipal, uow: UowDep, context: ContextDep) -> dict[str, Any]:
    return task_json(await _visible_task(uow, principal, task_id), now_of(context))


@router.post("/tasks/{task_id}/complete", summary="Complete a task (may meet the stage's goal)",
             operation_id="completeTask", **returns(R.TaskOut))
async def complete_task(task_id: str, principal: CurrentPrincipal, uow: UowDep, context: ContextDep,
                        idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"complete:{task_id}", payload={})):
        return replay
    now = now_of(context)
    task = await _visible_task(uow, principal, task_id, to_change=True)
    # Lock order everywhere: the lead's position, then its tasks.
    pos = await engine.lock_position(uow, principal.org_id, task.lead_id, now, create=False)
    task = await _visible_task(uow, principal, task_id, lock=True, to_change=True)
    if task.status != "open":
        raise Conflict(f"the task is {task.status}")
    version = task.version + 1
    await repository.complete_task(uow.session, task, principal.user_id, now)
    envelope = uow.publish(TaskCompletedV1(task_id=task_id, lead_id=task.lead_id, stage_id=task.stage_id,
                                           required=task.required, assignee_id=task.assignee_id,
                                           completed_by=principal.user_id, completed_at=now),
                           org_id=principal.org_id, subject_id=task_id, subject_version=version, occurred_at=now)
    if pos is not None:
        await engine.advance_while_goal_met(uow, pos, now, str(envelope.id))
        await engine.save_position(uow, pos, now)
    return await _finish(uow, idem, 200, task_json(await _task(uow, principal.org_id, task_id), now))


class ToRep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee_id: str = Field(min_length=1, max_length=100, description="a rep")


class ToTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    team_id: str = Field(min_length=1, max_length=100, description="a team")


@router.post("/tasks/{task_id}/reassign", summary="Give an open task to another rep or a team",
             operation_id="reassignTask", **returns(R.TaskOut))
async def reassign_task(task_id: str, body: ToRep | ToTeam, principal: CurrentPrincipal, uow: UowDep,
                        context: ContextDep, idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"reassign:{task_id}",
                                   payload=body.model_dump())):
        return replay
    task = await _visible_task(uow, principal, task_id, lock=True, to_change=True)
    if task.status != "open":
        raise Conflict(f"the task is {task.status}")
    rep, team = (body.assignee_id, None) if isinstance(body, ToRep) else (None, body.team_id)
    await engine.reassign_task(uow, task, assignee_kind="rep" if rep else "team", assignee_id=rep, team_id=team,
                               reason="manual", now=now_of(context), by=principal.user_id)
    return await _finish(uow, idem, 200, task_json(await _task(uow, principal.org_id, task_id), now_of(context)))


async def _task(uow: UnitOfWork, org_id: str, task_id: str) -> repository.TaskRecord:
    """A task as this transaction just wrote it."""
    task = await repository.get_task(uow.session, org_id, task_id)
    assert task is not None
    return task
