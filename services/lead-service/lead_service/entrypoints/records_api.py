"""/v1/activities, /v1/contacts and /v1/companies (contacts and companies are shared between leads)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import UowDep
from salesflow_shared.auth import CurrentPrincipal, Principal
from salesflow_shared.contract import returns
from salesflow_shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from salesflow_shared.idempotency import IdempotencyDep, IdempotentRequest, once
from salesflow_shared.pagination import CursorParam, LimitParam

from ..adapters.repository import records as record_repo
from ..adapters.repository.records import RecordKind, SharedRecord
from ..domain.lead import CompanyPatch, ContactPatch
from ..domain.times import as_utc, iso
from ..service_layer.activities import activity_to_dict, log_activity
from ..service_layer.shared_records import edit_shared_record
from ..service_layer.views import check_if_match, load_lead
from . import responses as R
from .common import json_with_etag, page_body

router = APIRouter(prefix="/v1", tags=["activities", "contacts", "companies"])


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    lead_id: str = Field(min_length=1, max_length=36)
    kind: Literal["call", "email", "meeting", "demo", "proposal", "note"]
    occurred_at: datetime
    duration_seconds: int | None = Field(None, ge=0, le=7 * 24 * 3600)
    outcome: str | None = Field(None, max_length=100)
    subject: str | None = Field(None, max_length=300)
    notes: str | None = Field(None, max_length=20_000)
    rep_id: str | None = Field(None, max_length=100, description="defaults to the caller")


async def _create_activity(body: ActivityIn, uow: Any, principal: Any, idem: IdempotentRequest) -> JSONResponse:
    async def act() -> dict[str, Any]:
        await load_lead(uow.session, principal.org_id, body.lead_id, principal=principal)
        if body.occurred_at.tzinfo is None:
            raise ValidationFailed.single("occurred_at", "must carry a time zone (RFC 3339)")
        rep_id = body.rep_id if (body.rep_id and principal.sees_whole_org) else principal.user_id
        activity = await log_activity(uow, principal.org_id, body.lead_id, kind=body.kind, rep_id=rep_id,
                                      occurred_at=as_utc(body.occurred_at), now=uow.clock.now(),
                                      duration_seconds=body.duration_seconds, outcome=body.outcome,
                                      subject=body.subject, notes=body.notes)
        return activity_to_dict(activity)

    return await once(idem, uow, org_id=principal.org_id, scope="activities.create",
                      payload=body.model_dump(mode="json"), act=act, status_code=201)


@router.post("/activities", status_code=201, summary="Log a call, email, meeting, demo, proposal or note",
             operation_id="createActivity", **returns(R.ActivityOut, status=201))
async def create_activity(body: ActivityIn, uow: UowDep, principal: CurrentPrincipal,
                          idem: IdempotencyDep) -> JSONResponse:
    return await _create_activity(body, uow, principal, idem)


@router.get("/activities", summary="A lead's timeline, newest first (cursor pagination)",
            operation_id="listActivities", **returns(R.ActivityPage))
async def list_activities(uow: UowDep, principal: CurrentPrincipal, lead_id: str, limit: LimitParam = 50,
                          cursor: CursorParam = None) -> dict[str, Any]:
    await load_lead(uow.session, principal.org_id, lead_id, principal=principal, to_change=False)
    page = await record_repo.activities_page(uow.session, principal.org_id, lead_id, limit=limit, cursor=cursor)
    return page_body(page, activity_to_dict)


def _record(record: SharedRecord) -> dict[str, Any]:
    return {"id": record.id, **record.values, "created_at": iso(record.created_at),
            "updated_at": iso(record.updated_at), "version": int(as_utc(record.updated_at).timestamp() * 1_000_000)}


def _list(kind: RecordKind, search: tuple[str, ...]) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def handler(uow: UowDep, principal: CurrentPrincipal, q: str | None = None, limit: LimitParam = 50,
                      cursor: CursorParam = None) -> dict[str, Any]:
        page = await record_repo.records_page(uow.session, kind, principal, q=q, search=search, limit=limit,
                                              cursor=cursor)
        return page_body(page, _record)
    return handler


router.add_api_route("/contacts", _list("contact", ("email", "first_name", "last_name")),
                     methods=["GET"], summary="List contacts",
                     name="list_contacts", tags=["contacts"], **returns(R.ContactPage))
router.add_api_route("/companies", _list("company", ("name", "domain")), methods=["GET"],
                     summary="List companies", name="list_companies", tags=["companies"], **returns(R.CompanyPage))


async def _one(uow: Any, kind: RecordKind, principal: Principal, record_id: str,
               to_change: bool = False) -> dict[str, Any]:
    """The record as the caller may see it (404 otherwise); `to_change`: 403 when it is only readable."""
    record = await record_repo.find_record(uow.session, kind, principal, record_id)
    if record is None:
        raise NotFound(f"no {kind} {record_id}")
    if to_change and not await record_repo.may_change_record(uow.session, kind, principal, record_id):
        raise Forbidden(f"{record_id} is read-only for you: none of its leads is yours now")
    return _record(record)


@router.get("/contacts/{contact_id}", summary="A contact",
            operation_id="getContact", **returns(R.ContactOut, etag=True))
async def get_contact(contact_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    return json_with_etag(await _one(uow, "contact", principal, contact_id))


@router.get("/companies/{company_id}", summary="A company",
            operation_id="getCompany", **returns(R.CompanyOut, etag=True))
async def get_company(company_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    return json_with_etag(await _one(uow, "company", principal, company_id))


async def _patch(uow: Any, kind: RecordKind, principal: Principal, record_id: str, values: dict[str, Any],
                 if_match: str | None) -> JSONResponse:
    org_id = principal.org_id
    current = await _one(uow, kind, principal, record_id, to_change=True)
    check_if_match(if_match, current["version"])
    if values:
        try:
            await edit_shared_record(uow, org_id, kind, record_id, values)
            await uow.commit()
        except IntegrityError as exc:
            raise Conflict("another record of this org already has that email or domain") from exc
    return json_with_etag(await _one(uow, kind, principal, record_id))


@router.patch("/contacts/{contact_id}", summary="Edit a contact (If-Match)",
              operation_id="updateContact", **returns(R.ContactOut, etag=True,
                                                      checked_beyond_schema=("email", "phone")))
async def patch_contact(contact_id: str, body: ContactPatch, uow: UowDep, principal: CurrentPrincipal,
                        if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    return await _patch(uow, "contact", principal, contact_id, body.model_dump(exclude_unset=True), if_match)


@router.patch("/companies/{company_id}", summary="Edit a company (If-Match)",
              operation_id="updateCompany", **returns(R.CompanyOut, etag=True, checked_beyond_schema=("domain",)))
async def patch_company(company_id: str, body: CompanyPatch, uow: UowDep, principal: CurrentPrincipal,
                        if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    return await _patch(uow, "company", principal, company_id, body.model_dump(exclude_unset=True), if_match)
