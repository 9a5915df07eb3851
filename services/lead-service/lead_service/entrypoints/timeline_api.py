"""GET /v1/leads/{lead_id}/timeline: one call for a lead's story and where it stands now.

Asynchronous effects (routing, assignment, stage entry, tasks, emails) land on the timeline as the other
services publish them. A client that sent `X-Correlation-ID: <id>` with its request waits for an effect by
polling `?correlation_id=<id>` until the entry it expects (e.g. `assigned`) is there.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from salesflow_shared.app import UowDep
from salesflow_shared.auth import CurrentPrincipal
from salesflow_shared.contract import returns
from salesflow_shared.pagination import CursorParam, LimitParam

from ..service_layer.timeline import current_stage, timeline_page
from ..service_layer.views import load_lead
from . import responses as R

router = APIRouter(prefix="/v1/leads", tags=["leads"])


@router.get("/{lead_id}/timeline", summary="A lead's story (events from every service, oldest first) and where "
            "it stands now: owner, pipeline, stage", operation_id="getLeadTimeline",
            **returns(R.LeadTimeline, etag=True))
async def get_lead_timeline(lead_id: str, uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 100,
                            cursor: CursorParam = None,
                            correlation_id: Annotated[str | None, Query(
                                max_length=100, description="only the entries caused by the request that sent "
                                                            "this X-Correlation-ID")] = None) -> JSONResponse:
    lead = await load_lead(uow.session, principal.org_id, lead_id, principal=principal)
    items, next_cursor = await timeline_page(uow, principal.org_id, lead_id, limit=limit, cursor=cursor,
                                             correlation_id=correlation_id)
    stage = await current_stage(uow, principal.org_id, lead_id) or {}
    body = {"lead_id": lead_id, "status": lead.status, "owner_id": lead.owner_id, "team_id": lead.team_id,
            "pipeline_id": stage.get("pipeline_id"), "stage_id": stage.get("stage_id"),
            "stage_name": stage.get("stage_name"), "items": items, "next_cursor": next_cursor}
    # The representation changes whenever an entry is added or the lead changes: both are in the validator.
    last = items[-1]["event_id"] if items else "none"
    return JSONResponse(body, headers={"ETag": f'"{lead.version}.{len(items)}.{last}"'})
