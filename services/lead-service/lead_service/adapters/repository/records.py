"""Activities, and contacts and companies as records of their own (shared between leads), org-scoped."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.inbox import dialect_name, per_dialect
from salesflow_shared.pagination import Page, decode_cursor, encode_cursor

from ...domain.activity import Activity
from ...domain.times import iso
from ..orm import activities, companies, contacts, leads
from . import cursor_instant
from .leads import readable_by

# ------------------------------------------------------------------ activities
_ACTIVITY_FIELDS = tuple(Activity.model_fields)
_INSERT_ACTIVITIES = sa.insert(activities)


async def insert_activities(session: AsyncSession, org_id: str, new: list[Activity], *,
                            external_id: str | None = None) -> None:
    """Store the lead activities (`external_id`: the one activity's id elsewhere, e.g. an email delivery)."""
    await (await session.connection()).execute(
        _INSERT_ACTIVITIES, [{**a.model_dump(), "org_id": org_id, "external_id": external_id} for a in new])


# Built once: an activity known by its id elsewhere is stored once (unique per org and external id).
_INSERT_EXTERNAL_ACTIVITY = per_dialect(lambda insert: insert(activities).on_conflict_do_nothing(
    index_elements=["org_id", "external_id"]).returning(activities.c.id))


async def insert_external_activity(session: AsyncSession, org_id: str, activity: Activity, external_id: str) -> bool:
    """Store the activity unless one with this external id is stored already (e.g. an email delivery reported
    twice under two event ids), in one statement; True when stored now."""
    result = await session.execute(_INSERT_EXTERNAL_ACTIVITY[dialect_name(session)], {
        **activity.model_dump(), "org_id": org_id, "external_id": external_id})
    return result.first() is not None


async def activities_page(session: AsyncSession, org_id: str, lead_id: str, *, limit: int,
                          cursor: str | None) -> Page[Activity]:
    """The lead's activities, newest first."""
    query = sa.select(activities).where(activities.c.org_id == org_id, activities.c.lead_id == lead_id)
    values = decode_cursor(cursor, 2)
    if values is not None:
        at = cursor_instant(values[0])
        query = query.where(sa.or_(activities.c.occurred_at < at,
                                   sa.and_(activities.c.occurred_at == at, activities.c.id < str(values[1]))))
    rows = (await session.execute(query.order_by(activities.c.occurred_at.desc(), activities.c.id.desc())
                                  .limit(limit + 1))).all()
    items = [Activity(**{k: r._mapping[k] for k in _ACTIVITY_FIELDS}) for r in rows[:limit]]
    next_cursor = encode_cursor([iso(items[-1].occurred_at), items[-1].id]) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)


# ------------------------------------------------------------------ contacts and companies
RecordKind = Literal["contact", "company"]
_TABLES = {"contact": contacts, "company": companies}
CONTACT_COLUMNS = ("first_name", "last_name", "email", "phone", "title", "company_id")
COMPANY_COLUMNS = ("name", "domain", "size", "industry")
_COLUMNS = {"contact": CONTACT_COLUMNS, "company": COMPANY_COLUMNS}


@dataclass(frozen=True)
class SharedRecord:
    """A contact or a company: its id, its own columns (CONTACT_COLUMNS or COMPANY_COLUMNS) and stamps."""
    id: str
    values: dict[str, str | None]
    created_at: datetime
    updated_at: datetime


def _record(kind: RecordKind, row: Any) -> SharedRecord:
    m = row._mapping
    return SharedRecord(m["id"], {f: m[f] for f in _COLUMNS[kind]}, m["created_at"], m["updated_at"])


def _of_reachable_lead(kind: RecordKind, principal: Principal, to_change: bool = False) -> Any:
    """A rep reaches the contacts and companies of the leads it may read (owns or owned before), and changes
    those of the leads it owns now (docs/access.md); admins and managers the whole org."""
    if principal.sees_whole_org:
        return sa.true()
    table = _TABLES[kind]
    link = leads.c.contact_id if kind == "contact" else leads.c.company_id
    allowed = leads.c.owner_id == principal.user_id if to_change else readable_by(principal)
    return sa.exists().where(link == table.c.id, leads.c.org_id == principal.org_id,
                             leads.c.deleted_at.is_(None), allowed)


async def records_page(session: AsyncSession, kind: RecordKind, principal: Principal, *, q: str | None,
                       search: tuple[str, ...], limit: int, cursor: str | None) -> Page[SharedRecord]:
    """The records `principal` reaches, in id order; `q` is found in any of the `search` columns."""
    table = _TABLES[kind]
    query = sa.select(table).where(table.c.org_id == principal.org_id, _of_reachable_lead(kind, principal))
    if q:
        like = f"%{q.lower()}%"
        query = query.where(sa.or_(*[sa.func.lower(table.c[f]).like(like) for f in search]))
    values = decode_cursor(cursor, 1)
    if values is not None:
        query = query.where(table.c.id > str(values[0]))
    rows = (await session.execute(query.order_by(table.c.id).limit(limit + 1))).all()
    items = [_record(kind, r) for r in rows[:limit]]
    return Page(items=items, next_cursor=encode_cursor([items[-1].id]) if len(rows) > limit else None)


async def find_record(session: AsyncSession, kind: RecordKind, principal: Principal,
                      record_id: str) -> SharedRecord | None:
    """The record when `principal` reaches it."""
    table = _TABLES[kind]
    row = (await session.execute(sa.select(table).where(
        table.c.id == record_id, table.c.org_id == principal.org_id,
        _of_reachable_lead(kind, principal)))).first()
    return _record(kind, row) if row is not None else None


async def may_change_record(session: AsyncSession, kind: RecordKind, principal: Principal, record_id: str) -> bool:
    """Whether one of the record's leads is `principal`'s now (or `principal` sees the whole org)."""
    if principal.sees_whole_org:
        return True
    table = _TABLES[kind]
    return (await session.execute(sa.select(table.c.id).where(
        table.c.id == record_id, _of_reachable_lead(kind, principal, to_change=True)))).first() is not None


async def update_record(session: AsyncSession, kind: RecordKind, org_id: str, record_id: str, values: dict[str, Any],
                        now: datetime) -> None:
    """Change some columns of the record (a company's domain is its de-duplication key too)."""
    table = _TABLES[kind]
    extra = {"dedup_key": values["domain"]} if kind == "company" and values.get("domain") else {}
    await session.execute(sa.update(table).where(table.c.id == record_id, table.c.org_id == org_id)
                          .values(**values, **extra, updated_at=now))
