"""/v1/leads: create, read, list, export, edit (If-Match), disqualify, delete, erase."""
from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, Principal
from salesflow_shared.clock import Rfc3339
from salesflow_shared.contract import CSV_FILE, LOCATION, returns
from salesflow_shared.errors import Conflict
from salesflow_shared.idempotency import IdempotencyDep
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor

from ..adapters.orm import leads
from ..domain.custom_fields import coerce_custom_fields
from ..domain.lead import LeadIn, LeadPatch, LeadStatus
from ..service_layer import leads as lead_ops
from ..service_layer.ingest import Candidate, ingest
from ..service_layer.views import (as_utc, check_if_match, etag, lead_select, load_lead, lock_lead_rows,
                                   row_to_lead, visible)
from . import responses as R
from .common import json_with_etag, now, org_setup

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


def _filtered(query: sa.Select, principal: Principal, f: LeadFilters) -> sa.Select:
    query = visible(query, principal)
    for name in ("status", "owner_id", "team_id", "source", "product_line"):
        value = getattr(f, name)
        if value is not None:
            query = query.where(leads.c[name] == value)
    if f.country:
        query = query.where(leads.c.country == f.country.upper())
    if f.created_from:
        query = query.where(leads.c.created_at >= as_utc(f.created_from))
    if f.created_to:
        query = query.where(leads.c.created_at < as_utc(f.created_to))
    if f.q:
        for word in f.q.lower().split():
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(leads.c.search_text.like(f"%{escaped}%", escape="\\"))
    return query


def _keyset(query: sa.Select, cursor: str | None) -> sa.Select:
    values = decode_cursor(cursor, 2)
    if values is not None:
        try:
            created = as_utc(datetime.fromisoformat(str(values[0]).replace("Z", "+00:00")))
        except ValueError:
            from salesflow_shared.errors import ValidationFailed
            raise ValidationFailed.single("cursor", "not a cursor this API issued") from None
        query = query.where(sa.or_(leads.c.created_at < created,
                                   sa.and_(leads.c.created_at == created, leads.c.id < str(values[1]))))
    return query.order_by(leads.c.created_at.desc(), leads.c.id.desc())


@router.post("", status_code=201, summary="Create a lead (an open lead with the same email is updated instead)",
             operation_id="createLead", **returns(R.LeadOut, status=201, etag=True, also={200: R.LeadOut}, headers=LOCATION))
async def create_lead(body: LeadIn, uow: UowDep, context: ContextDep, principal: CurrentPrincipal,
                      idem: IdempotencyDep) -> JSONResponse:
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="leads.create",
                              payload=body.model_dump(mode="json"))
    if replay is not None:
        return replay
    setup = await org_setup(context, uow.session, principal.org_id)
    clean, problems = coerce_custom_fields(body.custom_fields, setup.custom_defs)
    if problems:
        from salesflow_shared.errors import FieldError, ValidationFailed
        errors = [FieldError(f"custom_fields.{k}", m) for k, m in problems.items()]
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    body = body.model_copy(update={"custom_fields": clean})
    if principal.role == "rep" and body.owner_id is None:
        body = body.model_copy(update={"owner_id": principal.user_id})  # a rep's own lead stays visible to them
    [outcome] = await ingest(uow, principal.org_id, [Candidate(body, origin="api")], setup, now())
    status = 201 if outcome.created else 200
    response = await idem.complete(uow.session, status_code=status, body=outcome.lead,
                                   headers={"ETag": etag(outcome.lead), "Location": f"/v1/leads/{outcome.lead['id']}"})
    await uow.commit()
    return response


@router.get("", summary="List leads (cursor pagination, filters)", operation_id="listLeads", **returns(R.LeadPage))
async def list_leads(uow: UowDep, principal: CurrentPrincipal, filters: FiltersDep,
                     limit: LimitParam = 50, cursor: CursorParam = None) -> dict[str, Any]:
    query = _keyset(_filtered(lead_select(), principal, filters), cursor).limit(limit + 1)
    rows = (await uow.session.execute(query)).all()
    items = [row_to_lead(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([as_utc(last.created_at).isoformat(), last.id])
    return {"items": items, "next_cursor": next_cursor}


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
    base = _filtered(lead_select(), principal, filters)

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        cursor = None
        while True:
            async with context.uow() as uow:
                batch = (await uow.session.execute(_keyset(base, cursor).limit(500))).all()
            for row in batch:
                lead = row_to_lead(row)
                writer.writerow([_cell(lead, c) for c in EXPORT_COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < 500:
                return
            cursor = encode_cursor([as_utc(batch[-1].created_at).isoformat(), batch[-1].id])

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="leads.csv"'})


@router.get("/{lead_id}", summary="A lead, with its score breakdown and ETag",
            operation_id="getLead", **returns(R.LeadOut, etag=True))
async def get_lead(lead_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    lead = await load_lead(uow.session, principal.org_id, lead_id, principal=principal)
    return json_with_etag(lead)


@router.patch("/{lead_id}", summary="Edit a lead (If-Match required; 412 when stale)",
              operation_id="updateLead", **returns(R.LeadOut, etag=True))
async def patch_lead(lead_id: str, body: LeadPatch, uow: UowDep, context: ContextDep, principal: CurrentPrincipal,
                     if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    lead = await lock_lead_rows(uow.session, principal.org_id, lead_id, principal=principal)
    check_if_match(if_match, lead["version"])
    setup = await org_setup(context, uow.session, principal.org_id)
    after = await lead_ops.apply_patch(uow, lead, body, setup, principal.org_id, now())
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict("the change conflicts with another contact or company (email or domain taken)") from exc
    return json_with_etag(after)


class DisqualifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


@router.post("/{lead_id}/disqualify", summary="Disqualify a lead with a reason",
             operation_id="disqualifyLead", **returns(R.LeadOut, etag=True))
async def disqualify_lead(lead_id: str, body: DisqualifyIn, uow: UowDep, principal: CurrentPrincipal,
                          if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    lead = await load_lead(uow.session, principal.org_id, lead_id, for_update=True, principal=principal)
    if if_match is not None:
        check_if_match(if_match, lead["version"])
    after = await lead_ops.disqualify(uow, principal.org_id, lead, body.reason, now())
    await uow.commit()
    return json_with_etag(after)


@router.delete("/{lead_id}", status_code=204, summary="Soft-delete a lead (hidden from reads and lists)",
               operation_id="deleteLead")
async def delete_lead(lead_id: str, uow: UowDep, principal: CurrentPrincipal,
                      if_match: Annotated[str | None, Header()] = None) -> None:
    lead = await load_lead(uow.session, principal.org_id, lead_id, for_update=True, principal=principal)
    if if_match is not None:
        check_if_match(if_match, lead["version"])
    await lead_ops.soft_delete(uow, principal.org_id, lead, now())
    await uow.commit()


@router.post("/{lead_id}/erase", summary="GDPR erasure: scrub the person's data here and tell every service",
             operation_id="eraseLead", **returns(R.ErasedLeads))
async def erase_lead(lead_id: str, uow: UowDep, principal: AdminPrincipal) -> dict[str, Any]:
    lead = await lock_lead_rows(uow.session, principal.org_id, lead_id, include_deleted=True)
    erased = await lead_ops.erase(uow, principal.org_id, lead_id, lead["contact"].get("contact_id"), now(),
                                  email=lead["contact"].get("email"))
    await uow.commit()
    return {"erased_lead_ids": erased}
