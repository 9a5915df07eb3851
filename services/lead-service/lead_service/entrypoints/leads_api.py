"""/v1/leads: create, read, list, export, edit (If-Match), disqualify, delete, erase."""
from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, ManagerPrincipal
from salesflow_shared.clock import Rfc3339
from salesflow_shared.contract import CSV_FILE, LOCATION, returns
from salesflow_shared.errors import PROBLEM_CONTENT_TYPE, Conflict, ValidationFailed
from salesflow_shared.idempotency import Answer, IdempotencyDep, once
from salesflow_shared.pagination import CursorParam, LimitParam

from ..adapters.repository import leads as lead_repo
from ..adapters.repository.leads import LeadFilter
from ..domain.lead import LeadIn, LeadPatch, LeadStatus
from ..domain.stored_lead import StoredLead
from ..service_layer import leads as lead_ops
from ..service_layer.enrichment import retry_failed
from ..service_layer.entry import DuplicateEntry, enter_lead, with_valid_custom_fields
from ..service_layer.ingest import preview
from ..service_layer.views import check_if_match, etag, load_lead, lock_lead_rows, snapshot
from . import responses as R
from .common import etag_header, json_with_etag, org_setup, page_body

router = APIRouter(prefix="/v1/leads", tags=["leads"])


class LeadFilters(BaseModel):
    status: LeadStatus | None = None
    owner_id: str | None = None
    team_id: str | None = None
    source: str | None = None
    product_line: str | None = None
    country: str | None = None
    created_from: Rfc3339 | None = None
    created_to: Rfc3339 | None = None
    q: str | None = Field(None, max_length=200, description="free text on name, email and company")


FiltersDep = Annotated[LeadFilters, Query()]


def _lead_filter(f: LeadFilters) -> LeadFilter:
    return LeadFilter(**f.model_dump())


# A lead's intake checks beyond its schema (named by a 422): a contact to reach, a real country and currency,
# known UTM keys and custom fields, a value that fits.
LEAD_CHECKED = ("body", "contact", "company", "country", "utm", "value", "currency", "source", "custom_fields")

@router.post("", status_code=201, summary="Create a lead (an open lead with the same email is updated instead)",
             operation_id="createLead",
             **returns(R.LeadOut, status=201, etag=True, also={200: R.LeadOut}, headers=LOCATION,
                       checked_beyond_schema=LEAD_CHECKED))
async def create_lead(body: LeadIn, uow: UowDep, context: ContextDep, principal: CurrentPrincipal,
                      idem: IdempotencyDep) -> JSONResponse:
    async def act() -> Answer:
        setup = await org_setup(context, uow.session, principal.org_id)
        outcome = await enter_lead(uow, principal.org_id, body, setup,
                                   rep_id=principal.user_id if principal.role == "rep" else None,
                                   now=uow.clock.now())
        if isinstance(outcome, DuplicateEntry):
            # 409 naming the lead and its owner; stored like any response: a retry with the same Idempotency-Key
            # gets the same 409 and logs nothing again.
            return Answer({"type": "urn:salesflow:problem:duplicate-lead",
                           "title": "The prospect is another rep's open lead", "status": 409,
                           "detail": outcome.detail, "lead_id": outcome.lead_id, "owner_id": outcome.owner_id},
                          409, {"Content-Type": PROBLEM_CONTENT_TYPE})
        return Answer(outcome.lead.as_api_dict(), 201 if outcome.created else 200,
                      {"ETag": etag(outcome.lead), "Location": f"/v1/leads/{outcome.lead.id}"})

    return await once(idem, uow, org_id=principal.org_id, scope="leads.create",
                      payload=body.model_dump(mode="json"), act=act)


@router.post("/preview", summary="The lead as intake would create and route it (insights, score); stores nothing",
             operation_id="previewLead", **returns(R.LeadPreview, checked_beyond_schema=LEAD_CHECKED))
async def preview_lead(body: LeadIn, uow: UowDep, context: ContextDep, principal: ManagerPrincipal,
                       idem: IdempotencyDep) -> JSONResponse:
    """`lead` is the lead's API shape; `snapshot` is what its LeadCreated would carry — pass it as `lead` to
    assignment-service's POST /v1/routing/simulate to predict the routing of this very lead."""
    async def build() -> dict[str, Any]:
        setup = await org_setup(context, uow.session, principal.org_id)
        lead = preview(with_valid_custom_fields(body, setup), setup, uow.clock.now())
        return {"lead": lead.as_api_dict(), "snapshot": snapshot(lead).model_dump(mode="json")}

    # Stores nothing but the key's answer: a retry gets the preview it was first shown.
    return await once(idem, uow, org_id=principal.org_id, scope="leads:preview",
                      payload=body.model_dump(mode="json"), act=build)


@router.get("", summary="List leads (cursor pagination, filters)", operation_id="listLeads", **returns(R.LeadPage))
async def list_leads(uow: UowDep, principal: CurrentPrincipal, filters: FiltersDep,
                     limit: LimitParam = 50, cursor: CursorParam = None) -> JSONResponse:
    page = await lead_repo.leads_page(uow.session, principal, _lead_filter(filters), limit=limit, cursor=cursor)
    # Answered as built: a lead's API shape is plain JSON already, and FastAPI's encoder walking a page of 50
    # leads again was most of this read's CPU.
    return JSONResponse(page_body(page, StoredLead.as_api_dict))


EXPORT_COLUMNS = ("id", "status", "contact.first_name", "contact.last_name", "contact.email", "contact.phone",
                  "contact.title", "company.name", "company.domain", "company.size", "company.industry",
                  "country", "region", "postcode", "product_line", "value", "currency", "expected_close_date",
                  "source", "owner_id", "team_id", "score", "created_at", "updated_at")


def _cell(lead: dict[str, Any], column: str) -> Any:
    head, _, tail = column.partition(".")
    value = lead[head][tail] if tail else lead[head]
    text = "" if value is None else str(value)
    # never let a spreadsheet run a formula from a lead's data
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and column != "value" else text


@router.get("/export", summary="CSV export of a filtered lead list", response_class=StreamingResponse,
            operation_id="exportLeads", **returns(CSV_FILE, media_type="text/csv"))
async def export_leads(context: ContextDep, principal: CurrentPrincipal, filters: FiltersDep) -> StreamingResponse:
    lead_filter = _lead_filter(filters)

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        cursor = None
        while True:
            async with context.uow() as uow:
                batch = await lead_repo.leads_page(uow.session, principal, lead_filter, limit=500, cursor=cursor)
            for lead in batch.items:
                shape = lead.as_api_dict()
                writer.writerow([_cell(shape, c) for c in EXPORT_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if batch.next_cursor is None:
                return
            cursor = batch.next_cursor

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="leads.csv"'})


class EnrichmentRetryIn(BaseModel):
    """Which failed enrichments to run again (all of the org's when empty)."""
    model_config = ConfigDict(extra="forbid")
    failed_from: datetime | None = Field(None, description="last attempt failed at or after (RFC 3339)")
    failed_to: datetime | None = Field(None, description="last attempt failed before")
    created_from: datetime | None = None
    created_to: datetime | None = None
    lead_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] | None = Field(None, max_length=1000)


@router.post("/enrichment/retry", summary="Run enrichment again for leads whose enrichment failed (admin)",
             operation_id="retryEnrichment", **returns(R.EnrichmentRetried))
async def retry_enrichment(uow: UowDep, principal: AdminPrincipal, idem: IdempotencyDep,
                           body: EnrichmentRetryIn | None = None) -> JSONResponse:
    body = body or EnrichmentRetryIn()
    for name in ("failed_from", "failed_to", "created_from", "created_to"):
        value = getattr(body, name)
        if value is not None and value.tzinfo is None:
            raise ValidationFailed.single(name, "must carry a time zone (RFC 3339)")

    async def queue() -> dict[str, Any]:
        return {"queued": await retry_failed(
            uow, principal.org_id, uow.clock.now(), failed_from=body.failed_from, failed_to=body.failed_to,
            created_from=body.created_from, created_to=body.created_to, lead_ids=body.lead_ids)}

    return await once(idem, uow, org_id=principal.org_id, scope="enrichment:retry",
                      payload=body.model_dump(mode="json"), act=queue)


@router.get("/{lead_id}", summary="A lead, with its score breakdown and ETag",
            operation_id="getLead", **returns(R.LeadOut, etag=True))
async def get_lead(lead_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    lead = await load_lead(uow.session, principal.org_id, lead_id, principal=principal, to_change=False)
    return json_with_etag(lead.as_api_dict())


@router.patch("/{lead_id}", summary="Edit a lead (If-Match required; 412 when stale)",
              operation_id="updateLead", **returns(R.LeadOut, etag=True,
                                                   checked_beyond_schema=("country", "utm", "value", "currency",
                                                                          "source", "custom_fields")))
async def patch_lead(lead_id: str, body: LeadPatch, uow: UowDep, context: ContextDep, principal: CurrentPrincipal,
                     if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    lead = await lock_lead_rows(uow.session, principal.org_id, lead_id, principal=principal)
    check_if_match(if_match, lead.version)
    setup = await org_setup(context, uow.session, principal.org_id)
    after = await lead_ops.apply_patch(uow, lead, body, setup, principal.org_id, uow.clock.now())
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict("the change conflicts with another contact or company (email or domain taken)") from exc
    return json_with_etag(after.as_api_dict())


class DisqualifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


@router.post("/{lead_id}/disqualify", summary="Disqualify a lead with a reason",
             operation_id="disqualifyLead", **returns(R.LeadOut, etag=True))
async def disqualify_lead(lead_id: str, body: DisqualifyIn, uow: UowDep, principal: CurrentPrincipal,
                          idem: IdempotencyDep, if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    lead = await load_lead(uow.session, principal.org_id, lead_id, for_update=True, principal=principal)
    # A retry (same key, same If-Match) gets the stored answer: the lead's version has moved on since.
    async def act() -> dict[str, Any]:
        if if_match is not None:
            check_if_match(if_match, lead.version)
        return (await lead_ops.disqualify(uow, principal.org_id, lead, body.reason, uow.clock.now())).as_api_dict()

    return await once(idem, uow, org_id=principal.org_id, scope=f"disqualify:{lead_id}",
                      payload={"body": body.model_dump(), "if_match": if_match}, act=act, headers=etag_header)


@router.delete("/{lead_id}", status_code=204, summary="Soft-delete a lead (hidden from reads and lists)",
               operation_id="deleteLead")
async def delete_lead(lead_id: str, uow: UowDep, principal: CurrentPrincipal,
                      if_match: Annotated[str | None, Header()] = None) -> None:
    lead = await load_lead(uow.session, principal.org_id, lead_id, for_update=True, principal=principal)
    if if_match is not None:
        check_if_match(if_match, lead.version)
    await lead_ops.soft_delete(uow, principal.org_id, lead, uow.clock.now())
    await uow.commit()


@router.post("/{lead_id}/erase", summary="GDPR erasure: scrub the person's data here and tell every service",
             operation_id="eraseLead", **returns(R.ErasedLeads))
async def erase_lead(lead_id: str, uow: UowDep, principal: AdminPrincipal, idem: IdempotencyDep) -> JSONResponse:
    async def erase() -> dict[str, Any]:
        lead = await lock_lead_rows(uow.session, principal.org_id, lead_id, include_deleted=True)
        erased = await lead_ops.erase(uow, principal.org_id, lead_id, lead.contact.contact_id,
                                      uow.clock.now(), email=lead.contact.email)
        return {"erased_lead_ids": erased}  # ids only: the stored answer holds no personal data

    return await once(idem, uow, org_id=principal.org_id, scope=f"erase:{lead_id}", payload=None, act=erase)
