"""Reading leads: the joined query, the API shape, the event snapshot, ETags and rep scoping."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.errors import Forbidden, NotFound
from salesflow_shared.events import LeadSnapshot
from salesflow_shared.ownership import owned_or_owned_before
from salesflow_shared.preconditions import check_if_match as shared_check_if_match
from salesflow_shared.preconditions import strong_etag

from ..adapters.orm import companies, contacts, lead_past_owners, leads

CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "title")
COMPANY_FIELDS = ("name", "domain", "size", "industry")
LEAD_FIELDS = ("country", "region", "postcode", "timezone", "language", "product_line", "value", "currency",
               "expected_close_date", "source", "utm", "custom_fields", "status", "owner_id", "team_id")


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def lead_select() -> sa.Select[Any]:
    """The joined lead query (built once: constructing SQL expressions is a hot-path CPU cost)."""
    return _LEAD_SELECT


def _build_lead_select() -> sa.Select[Any]:
    return sa.select(
        leads,
        *[contacts.c[f].label(f"c_{f}") for f in CONTACT_FIELDS],
        *[companies.c[f].label(f"co_{f}") for f in COMPANY_FIELDS],
    ).select_from(
        leads.outerjoin(contacts, contacts.c.id == leads.c.contact_id)
        .outerjoin(companies, companies.c.id == leads.c.company_id))


_LEAD_SELECT = _build_lead_select()

def readable_by(principal: Principal) -> Any:
    """A rep reads the leads it owns or owned before (docs/access.md); admins and managers the whole org."""
    if principal.sees_whole_org:
        return sa.true()
    return owned_or_owned_before(lead_past_owners, principal, leads.c.id, leads.c.owner_id)


def visible(query: sa.Select[Any], principal: Principal) -> sa.Select[Any]:
    """Org scoping always; a rep sees only the leads they own or owned before."""
    return query.where(leads.c.org_id == principal.org_id, leads.c.deleted_at.is_(None), readable_by(principal))


def check_may_change(principal: Principal | None, lead: dict[str, Any]) -> None:
    """A rep changes only the leads it owns now: one it owned before is read-only."""
    if principal is not None and not principal.sees_whole_org and lead["owner_id"] != principal.user_id:
        raise Forbidden(f"lead {lead['id']} is read-only for you: you no longer own it")


def row_to_lead(row: Any) -> dict[str, Any]:
    m = row._mapping
    value = m["value"]
    return {
        "id": m["id"],
        "contact": {"contact_id": m["contact_id"], **{f: m[f"c_{f}"] for f in CONTACT_FIELDS}},
        "company": {"company_id": m["company_id"], **{f: m[f"co_{f}"] for f in COMPANY_FIELDS}},
        "country": m["country"], "region": m["region"], "postcode": m["postcode"],
        "timezone": m["timezone"], "language": m["language"], "product_line": m["product_line"],
        "value": None if value is None else str(Decimal(value).quantize(Decimal("0.01"))),
        "currency": m["currency"],
        "expected_close_date": m["expected_close_date"].isoformat() if isinstance(m["expected_close_date"], date)
        else m["expected_close_date"],
        "source": m["source"], "utm": m["utm"] or {}, "custom_fields": m["custom_fields"] or {},
        "status": m["status"], "disqualify_reason": m["disqualify_reason"],
        "owner_id": m["owner_id"], "team_id": m["team_id"],
        "score": m["score"], "score_breakdown": m["score_breakdown"] or [],
        "enrichment": m["enrichment"] or {}, "enrichment_status": m["enrichment_status"],
        "form_id": m["form_id"], "import_id": m["import_id"],
        "version": m["version"],
        "created_at": iso(m["created_at"]), "updated_at": iso(m["updated_at"]),
        "erased_at": iso(m["erased_at"]),
    }


def snapshot(lead: dict[str, Any]) -> LeadSnapshot:
    return LeadSnapshot.model_validate({**lead, "lead_id": lead["id"], "utm": lead.get("utm") or {},
                                        "custom_fields": lead.get("custom_fields") or {}})


def etag(lead: dict[str, Any]) -> str:
    return strong_etag(lead["version"])


def check_if_match(if_match: str | None, current_version: int) -> None:
    shared_check_if_match(if_match, strong_etag(current_version))


async def load_lead(session: AsyncSession, org_id: str, lead_id: str, *, for_update: bool = False,
                    principal: Principal | None = None, include_deleted: bool = False,
                    to_change: bool = True) -> dict[str, Any]:
    """The lead as `principal` may see it (404 when it may not); with `to_change`, a rep who only owned it
    before gets 403 (it is read-only for them)."""
    query = lead_select().where(leads.c.id == lead_id, leads.c.org_id == org_id)
    if not include_deleted:
        query = query.where(leads.c.deleted_at.is_(None))
    if principal is not None:
        query = query.where(readable_by(principal))
    if for_update:
        query = query.with_for_update(of=leads)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no lead {lead_id}")
    lead = row_to_lead(row)
    if to_change:
        check_may_change(principal, lead)
    return lead


async def lock_lead_rows(session: AsyncSession, org_id: str, lead_id: str, principal: Principal | None = None,
                         include_deleted: bool = False) -> dict[str, Any]:
    """Lock a lead for a change in the order every ingest uses (company → contact → lead), so an edit or an
    erasure racing a submission of the same person waits instead of deadlocking; returns the locked lead."""
    lead = await load_lead(session, org_id, lead_id, principal=principal, include_deleted=include_deleted)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        if lead["company"].get("company_id"):
            await session.execute(sa.select(companies.c.id).where(
                companies.c.id == lead["company"]["company_id"]).with_for_update())
        if lead["contact"].get("contact_id"):
            await session.execute(sa.select(contacts.c.id).where(
                contacts.c.id == lead["contact"]["contact_id"]).with_for_update())
    return await load_lead(session, org_id, lead_id, for_update=True, principal=principal,
                           include_deleted=include_deleted)
