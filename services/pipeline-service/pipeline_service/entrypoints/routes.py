"""The service's HTTP API (docs/architecture.md: /v1/pipelines, /v1/positions, /v1/tasks)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal
from salesflow_shared.contract import returns
from salesflow_shared.currency import ExactCurrencyCode
from salesflow_shared.errors import NotFound, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep, IdempotentRequest
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain.definitions import BLANK
from ..domain.templates import TEMPLATES
from ..service_layer import engine
from ..service_layer import manual_changes as manual
from ..service_layer import pipelines as admin
from ..service_layer.views import position_json, task_json
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
async def get_position(lead_id: str, principal: CurrentPrincipal, uow: UowDep, context: ContextDep) -> JSONResponse:
    # position_json is plain JSON already: answered as built, not walked again by FastAPI's encoder.
    return JSONResponse(await position_json(uow, principal, lead_id, now_of(context)))


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
    await manual.move_lead(uow, principal, lead_id, to_stage_id=body.to_stage_id, note=body.reason, now=now)
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
    await manual.mark_won(uow, principal, lead_id, value=Decimal(body.value), currency=body.currency,
                          notes=body.notes, now=now)
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
    await manual.mark_lost(uow, principal, lead_id, reason=body.reason, reengage_at=body.reengage_at, now=now)
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


@router.get("/tasks/{task_id}", summary="One task", operation_id="getTask", **returns(R.TaskOut))
async def get_task(task_id: str, principal: CurrentPrincipal, uow: UowDep, context: ContextDep) -> dict[str, Any]:
    return task_json(await manual.visible_task(uow, principal, task_id), now_of(context))


@router.post("/tasks/{task_id}/complete", summary="Complete a task (may meet the stage's goal)",
             operation_id="completeTask", **returns(R.TaskOut))
async def complete_task(task_id: str, principal: CurrentPrincipal, uow: UowDep, context: ContextDep,
                        idem: IdempotencyDep) -> JSONResponse:
    if (replay := await idem.begin(uow.session, org_id=principal.org_id, scope=f"complete:{task_id}", payload={})):
        return replay
    now = now_of(context)
    return await _finish(uow, idem, 200, task_json(await manual.complete_task(uow, principal, task_id, now), now))


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
    rep, team = (body.assignee_id, None) if isinstance(body, ToRep) else (None, body.team_id)
    task = await manual.hand_over_task(uow, principal, task_id, assignee_id=rep, team_id=team, now=now_of(context))
    return await _finish(uow, idem, 200, task_json(task, now_of(context)))
