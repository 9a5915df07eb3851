"""/v1/activities, /v1/contacts and /v1/companies (contacts and companies are shared between leads)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from salesflow_shared.app import UowDep
from salesflow_shared.auth import CurrentPrincipal, Principal
from salesflow_shared.contract import returns
from salesflow_shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from salesflow_shared.events import LeadUpdatedV1
from salesflow_shared.idempotency import IdempotencyDep, IdempotentRequest
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor

from ..adapters.orm import activities, companies, contacts, leads
from ..domain.lead import CompanyPatch, ContactPatch
from ..service_layer.activities import activity_to_dict, log_activity
from ..service_layer.ingest import lead_columns
from ..service_layer.views import (
    as_utc,
    check_if_match,
    iso,
    lead_select,
    load_lead,
    readable_by,
    row_to_lead,
    snapshot,
)
from . import responses as R

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
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="activities.create",
                              payload=body.model_dump(mode="json"))
    if replay is not None:
        return replay
    await load_lead(uow.session, principal.org_id, body.lead_id, principal=principal)
    if body.occurred_at.tzinfo is None:
        raise ValidationFailed.single("occurred_at", "must carry a time zone (RFC 3339)")
    rep_id = body.rep_id if (body.rep_id and principal.sees_whole_org) else principal.user_id
    activity = await log_activity(uow, principal.org_id, body.lead_id, kind=body.kind, rep_id=rep_id,
                                  occurred_at=as_utc(body.occurred_at), now=uow.clock.now(),
                                  duration_seconds=body.duration_seconds, outcome=body.outcome,
                                  subject=body.subject, notes=body.notes)
    activity.pop("org_id", None)
    activity.pop("external_id", None)
    response = await idem.complete(uow.session, status_code=201, body=activity)
    await uow.commit()
    return response


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
    query = sa.select(activities).where(activities.c.org_id == principal.org_id, activities.c.lead_id == lead_id)
    values = decode_cursor(cursor, 2)
    if values is not None:
        at = as_utc(datetime.fromisoformat(str(values[0]).replace("Z", "+00:00")))
        query = query.where(sa.or_(activities.c.occurred_at < at,
                                   sa.and_(activities.c.occurred_at == at, activities.c.id < str(values[1]))))
    rows = (await uow.session.execute(query.order_by(activities.c.occurred_at.desc(), activities.c.id.desc())
                                      .limit(limit + 1))).all()
    items = [activity_to_dict(r) for r in rows[:limit]]
    next_cursor = encode_cursor([items[-1]["occurred_at"], items[-1]["id"]]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def _record(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    m = row._mapping
    out = {"id": m["id"], **{f: m[f] for f in fields}, "created_at": iso(m["created_at"]),
           "updated_at": iso(m["updated_at"])}
    out["version"] = int(as_utc(m["updated_at"]).timestamp() * 1_000_000)
    return out


def _of_reachable_lead(table: sa.Table, principal: Principal, to_change: bool = False) -> Any:
    """A rep reaches the contacts and companies of the leads it may read (owns or owned before), and changes
    those of the leads it owns now (docs/access.md); admins and managers the whole org."""
    if principal.sees_whole_org:
        return sa.true()
    link = leads.c.contact_id if table is contacts else leads.c.company_id
    allowed = leads.c.owner_id == principal.user_id if to_change else readable_by(principal)
    return sa.exists().where(link == table.c.id, leads.c.org_id == principal.org_id,
                             leads.c.deleted_at.is_(None), allowed)


def _list(table: sa.Table, fields: tuple[str, ...],
          search: tuple[str, ...]) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def handler(uow: UowDep, principal: CurrentPrincipal, q: str | None = None, limit: LimitParam = 50,
                      cursor: CursorParam = None) -> dict[str, Any]:
        query = sa.select(table).where(table.c.org_id == principal.org_id, _of_reachable_lead(table, principal))
        if q:
            like = f"%{q.lower()}%"
            query = query.where(sa.or_(*[sa.func.lower(table.c[f]).like(like) for f in search]))
        values = decode_cursor(cursor, 1)
        if values is not None:
            query = query.where(table.c.id > str(values[0]))
        rows = (await uow.session.execute(query.order_by(table.c.id).limit(limit + 1))).all()
        items = [_record(r, fields) for r in rows[:limit]]
        return {"items": items, "next_cursor": encode_cursor([items[-1]["id"]]) if len(rows) > limit else None}
    return handler


CONTACT_OUT = ("first_name", "last_name", "email", "phone", "title", "company_id")
COMPANY_OUT = ("name", "domain", "size", "industry")
router.add_api_route("/contacts", _list(contacts, CONTACT_OUT, ("email", "first_name", "last_name")),
                     methods=["GET"], summary="List contacts",
                     name="list_contacts", tags=["contacts"], **returns(R.ContactPage))
router.add_api_route("/companies", _list(companies, COMPANY_OUT, ("name", "domain")), methods=["GET"],
                     summary="List companies", name="list_companies", tags=["companies"], **returns(R.CompanyPage))


async def _one(uow: Any, table: sa.Table, principal: Principal, record_id: str, fields: tuple[str, ...],
               to_change: bool = False) -> dict[str, Any]:
    """The record as the caller may see it (404 otherwise); `to_change`: 403 when it is only readable."""
    row = (await uow.session.execute(sa.select(table).where(
        table.c.id == record_id, table.c.org_id == principal.org_id, _of_reachable_lead(table, principal)))).first()
    if row is None:
        raise NotFound(f"no {table.name[:-1] if table.name != 'companies' else 'company'} {record_id}")
    if to_change and not principal.sees_whole_org:
        owned = (await uow.session.execute(sa.select(table.c.id).where(
            table.c.id == record_id, _of_reachable_lead(table, principal, to_change=True)))).first()
        if owned is None:
            raise Forbidden(f"{record_id} is read-only for you: none of its leads is yours now")
    return _record(row, fields)


def _etagged(record: dict[str, Any]) -> JSONResponse:
    return JSONResponse(record, headers={"ETag": f'"{record["version"]}"'})


@router.get("/contacts/{contact_id}", summary="A contact",
            operation_id="getContact", **returns(R.ContactOut, etag=True))
async def get_contact(contact_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    return _etagged(await _one(uow, contacts, principal, contact_id, CONTACT_OUT))


@router.get("/companies/{company_id}", summary="A company",
            operation_id="getCompany", **returns(R.CompanyOut, etag=True))
async def get_company(company_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    return _etagged(await _one(uow, companies, principal, company_id, COMPANY_OUT))


async def _patch(uow: Any, table: sa.Table, principal: Principal, record_id: str, fields: tuple[str, ...],
                 values: dict[str, Any], if_match: str | None) -> JSONResponse:
    org_id = principal.org_id
    current = await _one(uow, table, principal, record_id, fields, to_change=True)
    check_if_match(if_match, current["version"])
    if values:
        extra = {"dedup_key": values["domain"]} if table is companies and values.get("domain") else {}
        try:
            await uow.session.execute(sa.update(table).where(table.c.id == record_id, table.c.org_id == org_id)
                                      .values(**values, **extra, updated_at=uow.clock.now()))
            await _propagate(uow, org_id, table, record_id, list(values))
            await uow.commit()
        except IntegrityError as exc:
            raise Conflict("another record of this org already has that email or domain") from exc
    return _etagged(await _one(uow, table, principal, record_id, fields))


async def _propagate(uow: Any, org_id: str, table: sa.Table, record_id: str, changed: list[str]) -> None:
    """A contact or company is part of every lead that links it: those leads change too (new version,
    LeadUpdated), and their de-duplication email and search text follow."""
    column = leads.c.contact_id if table is contacts else leads.c.company_id
    prefix = "contact." if table is contacts else "company."
    rows = (await uow.session.execute(lead_select().where(
        column == record_id, leads.c.org_id == org_id, leads.c.deleted_at.is_(None)).with_for_update(of=leads))).all()
    stamp = uow.clock.now()
    for row in rows:
        lead = row_to_lead(row)
        lead["version"] += 1
        await uow.session.execute(sa.update(leads).where(leads.c.id == lead["id"]).values(
            **lead_columns(lead), updated_at=stamp))
        uow.publish(LeadUpdatedV1(lead=snapshot(lead), changed=sorted(prefix + f for f in changed),
                                  cause="edit"), org_id=org_id, subject_id=lead["id"], subject_version=lead["version"])


@router.patch("/contacts/{contact_id}", summary="Edit a contact (If-Match)",
              operation_id="updateContact", **returns(R.ContactOut, etag=True,
                                                      checked_beyond_schema=("email", "phone")))
async def patch_contact(contact_id: str, body: ContactPatch, uow: UowDep, principal: CurrentPrincipal,
                        if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    return await _patch(uow, contacts, principal, contact_id, CONTACT_OUT,
                        body.model_dump(exclude_unset=True), if_match)


@router.patch("/companies/{company_id}", summary="Edit a company (If-Match)",
              operation_id="updateCompany", **returns(R.CompanyOut, etag=True, checked_beyond_schema=("domain",)))
async def patch_company(company_id: str, body: CompanyPatch, uow: UowDep, principal: CurrentPrincipal,
                        if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    return await _patch(uow, companies, principal, company_id, COMPANY_OUT,
                        body.model_dump(exclude_unset=True), if_match)
