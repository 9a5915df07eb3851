"""Reading and writing leads with their contact and company, always org-scoped.

A lead is read and written as the typed `StoredLead` (with its `StoredContact` and `StoredCompany`), on the
intake path as everywhere else. Statements on the intake path are built once (constructing SQL is a hot-path
CPU cost).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any
from urllib.parse import quote_plus

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.auth import Principal
from salesflow_shared.db import rows_affected
from salesflow_shared.ownership import owned_or_owned_before
from salesflow_shared.ownership import remember_past_owner as remember_in
from salesflow_shared.pagination import decode_cursor, encode_cursor

from ...domain.lead import COMPANY_FIELDS, CONTACT_FIELDS, OPEN_STATUSES, search_text
from ...domain.stored_lead import StoredCompany, StoredContact, StoredLead, to_cents
from ...domain.times import as_utc
from ..orm import activities, companies, contacts, import_rows, lead_past_owners, leads, submissions
from . import INSERT_BY_DIALECT, Page, cursor_instant, new_id

# ------------------------------------------------------------------ the lead's shape <-> its rows
LEAD_SELECT = sa.select(
    leads,
    *[contacts.c[f].label(f"c_{f}") for f in CONTACT_FIELDS],
    *[companies.c[f].label(f"co_{f}") for f in COMPANY_FIELDS],
).select_from(
    leads.outerjoin(contacts, contacts.c.id == leads.c.contact_id)
    .outerjoin(companies, companies.c.id == leads.c.company_id))


def stored_lead(row: Any) -> StoredLead:
    """The typed lead of a LEAD_SELECT row."""
    m = row._mapping
    value = m["value"]
    close = m["expected_close_date"]
    return StoredLead(
        id=m["id"],
        contact=StoredContact(m["contact_id"], *(m[f"c_{f}"] for f in CONTACT_FIELDS)),
        company=StoredCompany(m["company_id"], *(m[f"co_{f}"] for f in COMPANY_FIELDS)),
        country=m["country"], region=m["region"], postcode=m["postcode"],
        timezone=m["timezone"], language=m["language"], product_line=m["product_line"],
        value=None if value is None else to_cents(value),
        currency=m["currency"],
        expected_close_date=date.fromisoformat(close) if isinstance(close, str) else close,
        source=m["source"], utm=m["utm"] or {}, custom_fields=m["custom_fields"] or {},
        status=m["status"], disqualify_reason=m["disqualify_reason"],
        owner_id=m["owner_id"], team_id=m["team_id"],
        score=m["score"], score_breakdown=m["score_breakdown"] or [],
        enrichment=m["enrichment"] or {}, enrichment_status=m["enrichment_status"],
        form_id=m["form_id"], import_id=m["import_id"],
        version=m["version"],
        created_at=m["created_at"], updated_at=m["updated_at"], erased_at=m["erased_at"],
    )


# The lead's own columns, written as the record holds them (its id and timestamps are set by the writers).
_LEAD_OWN_COLUMNS = tuple(f.name for f in fields(StoredLead)
                          if f.name not in ("id", "contact", "company", "created_at", "updated_at", "erased_at"))


def lead_columns(lead: StoredLead) -> dict[str, Any]:
    """The leads-table values of a lead."""
    contact, company = lead.contact, lead.company
    return {
        "contact_id": contact.contact_id, "company_id": company.company_id, "email": contact.email,
        "search_text": search_text(contact.first_name, contact.last_name, contact.email, company.name),
        **{column: getattr(lead, column) for column in _LEAD_OWN_COLUMNS},
    }


# ------------------------------------------------------------------ reading
def readable_by(principal: Principal) -> Any:
    """A rep reads the leads it owns or owned before (docs/access.md); admins and managers the whole org."""
    if principal.sees_whole_org:
        return sa.true()
    return owned_or_owned_before(lead_past_owners, principal, leads.c.id, leads.c.owner_id)


_LEAD_BY_ID = LEAD_SELECT.where(leads.c.id == sa.bindparam("lead_id"), leads.c.org_id == sa.bindparam("org_id"))
_LEAD_NOT_DELETED = _LEAD_BY_ID.where(leads.c.deleted_at.is_(None))
# (include_deleted, for_update) → the query for a caller who sees the whole org (built once: a hot path)
_LEAD_QUERIES = {(True, False): _LEAD_BY_ID, (False, False): _LEAD_NOT_DELETED,
                 (True, True): _LEAD_BY_ID.with_for_update(of=leads),
                 (False, True): _LEAD_NOT_DELETED.with_for_update(of=leads)}


async def find_lead(session: AsyncSession, org_id: str, lead_id: str, *, for_update: bool = False,
                    principal: Principal | None = None, include_deleted: bool = False) -> StoredLead | None:
    """The lead as `principal` may read it (None when it may not, or there is none)."""
    if principal is None or principal.sees_whole_org:
        query = _LEAD_QUERIES[include_deleted, for_update]
    else:  # a rep: the leads it owns or owned before
        query = _LEAD_QUERIES[include_deleted, False].where(readable_by(principal))
        if for_update:
            query = query.with_for_update(of=leads)
    row = (await session.execute(query, {"org_id": org_id, "lead_id": lead_id})).first()
    return stored_lead(row) if row is not None else None


async def lock_contact_and_company(session: AsyncSession, org_id: str, lead: StoredLead) -> None:
    """Lock the lead's company, then its contact (PostgreSQL; SQLite locks the whole database on write)."""
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return
    if lead.company.company_id:
        await session.execute(sa.select(companies.c.id).where(
            companies.c.org_id == org_id, companies.c.id == lead.company.company_id).with_for_update())
    if lead.contact.contact_id:
        await session.execute(sa.select(contacts.c.id).where(
            contacts.c.org_id == org_id, contacts.c.id == lead.contact.contact_id).with_for_update())


_OPEN_LEADS = LEAD_SELECT.where(leads.c.org_id == sa.bindparam("org_id"), leads.c.status.in_(OPEN_STATUSES),
                                leads.c.deleted_at.is_(None), leads.c.erased_at.is_(None))
# one email (a form submission) needs no expanding IN: a plain comparison compiles once and is cached
_OPEN_LEADS_OF_ONE = _OPEN_LEADS.where(leads.c.email == sa.bindparam("email")) \
    .order_by(leads.c.created_at, leads.c.id)
_OPEN_LEADS_OF_MANY = _OPEN_LEADS.where(leads.c.email.in_(sa.bindparam("emails", expanding=True))) \
    .order_by(leads.c.created_at, leads.c.id)
_OPEN_LEAD_QUERIES = {(False, False): _OPEN_LEADS_OF_ONE, (True, False): _OPEN_LEADS_OF_MANY,
                      (False, True): _OPEN_LEADS_OF_ONE.with_for_update(of=leads),
                      (True, True): _OPEN_LEADS_OF_MANY.with_for_update(of=leads)}


async def open_leads_by_email(session: AsyncSession, org_id: str, emails: list[str],
                              for_update: bool = True) -> dict[str, StoredLead]:
    """The open lead of each email (the newest when there are several), locked unless `for_update` is False."""
    if not emails:
        return {}
    many = len(emails) > 1
    params = {"org_id": org_id, **({"emails": emails} if many else {"email": emails[0]})}
    found: dict[str, StoredLead] = {}
    rows = (await (await session.connection()).execute(_OPEN_LEAD_QUERIES[many, for_update], params)).all()
    for row in rows:
        found[row.email] = stored_lead(row)  # the newest open lead wins
    return found


@dataclass(frozen=True)
class LeadFilter:
    status: str | None = None
    owner_id: str | None = None
    team_id: str | None = None
    source: str | None = None
    product_line: str | None = None
    country: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    q: str | None = None  # words, each found in the name, email or company


def _filtered(principal: Principal, f: LeadFilter) -> sa.Select[Any]:
    """Org scoping always; a rep sees only the leads they own or owned before."""
    query = LEAD_SELECT.where(leads.c.org_id == principal.org_id, leads.c.deleted_at.is_(None),
                              readable_by(principal))
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


def _keyset(query: sa.Select[Any], cursor: str | None) -> sa.Select[Any]:
    values = decode_cursor(cursor, 2)
    if values is not None:
        created = cursor_instant(values[0])
        query = query.where(sa.or_(leads.c.created_at < created,
                                   sa.and_(leads.c.created_at == created, leads.c.id < str(values[1]))))
    return query.order_by(leads.c.created_at.desc(), leads.c.id.desc())


async def leads_page(session: AsyncSession, principal: Principal, filters: LeadFilter, *, limit: int,
                     cursor: str | None) -> Page[StoredLead]:
    """The leads `principal` may read that pass `filters`, newest first, one page after `cursor`."""
    rows = (await session.execute(_keyset(_filtered(principal, filters), cursor).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([as_utc(last.created_at).isoformat(), last.id])
    return Page(items=[stored_lead(r) for r in rows[:limit]], next_cursor=next_cursor)


async def lock_open_leads(session: AsyncSession, org_id: str, *, after_id: str, limit: int) -> list[StoredLead]:
    """The org's open leads in id order after `after_id`, locked (a batch of a rescoring)."""
    rows = (await session.execute(LEAD_SELECT.where(
        leads.c.org_id == org_id, leads.c.status.in_(OPEN_STATUSES), leads.c.deleted_at.is_(None),
        leads.c.id > after_id).order_by(leads.c.id).limit(limit).with_for_update(of=leads))).all()
    return [stored_lead(r) for r in rows]


async def lock_leads_linking(session: AsyncSession, org_id: str, *, contact_id: str | None = None,
                             company_id: str | None = None) -> list[StoredLead]:
    """The (not deleted) leads that link the contact, or the company, locked."""
    column = leads.c.contact_id if contact_id is not None else leads.c.company_id
    rows = (await session.execute(LEAD_SELECT.where(
        column == (contact_id if contact_id is not None else company_id), leads.c.org_id == org_id,
        leads.c.deleted_at.is_(None)).with_for_update(of=leads))).all()
    return [stored_lead(r) for r in rows]


CONSUMED_VERSIONS = ("assignment_version", "outcome_version")


async def lock_lead_for_event(session: AsyncSession, org_id: str, lead_id: str
                              ) -> tuple[StoredLead, dict[str, int]] | None:
    """The (not deleted) lead locked, with the last subject_version seen of each producer family of consumed
    events (`assignment_version`, `outcome_version`): both from the one locked read (None: no such lead)."""
    row = (await session.execute(_LEAD_QUERIES[False, True], {"org_id": org_id, "lead_id": lead_id})).first()
    if row is None:
        return None
    return stored_lead(row), {column: int(row._mapping[column]) for column in CONSUMED_VERSIONS}


# ------------------------------------------------------------------ writing leads
_INSERT_LEADS = sa.insert(leads)
# Values come with the parameters (their keys name the columns set), so one statement serves every update.
_UPDATE_LEAD = sa.update(leads).where(leads.c.org_id == sa.bindparam("b_org_id"), leads.c.id == sa.bindparam("b_id"))


async def insert_leads(session: AsyncSession, org_id: str, new_leads: list[StoredLead], now: datetime) -> None:
    if new_leads:
        await (await session.connection()).execute(_INSERT_LEADS, [
            {"id": lead.id, "org_id": org_id, **lead_columns(lead), "created_at": now, "updated_at": now}
            for lead in new_leads])


async def save_lead(session: AsyncSession, org_id: str, lead: StoredLead, now: datetime, **extra: Any) -> None:
    """Write every column of the lead (and `extra` columns), stamped `now`."""
    await (await session.connection()).execute(_UPDATE_LEAD, {
        "b_org_id": org_id, "b_id": lead.id, **lead_columns(lead), **extra, "updated_at": now})


_UPDATE_LEAD_AT_VERSION = _UPDATE_LEAD.where(leads.c.version == sa.bindparam("b_version"))


async def save_lead_read_at(session: AsyncSession, org_id: str, lead: StoredLead, read_version: int,
                            now: datetime, **extra: Any) -> bool:
    """`save_lead`, only if the lead is still at the version it was read at; False (nothing written) when a
    concurrent transaction changed it first. On PostgreSQL the read's row lock already ensures that; SQLite
    (the embedded mode) takes no lock on a read, so this is what keeps another writer's columns."""
    result = await (await session.connection()).execute(_UPDATE_LEAD_AT_VERSION, {
        "b_org_id": org_id, "b_id": lead.id, "b_version": read_version, **lead_columns(lead), **extra,
        "updated_at": now})
    return rows_affected(result) == 1


async def set_lead_columns(session: AsyncSession, org_id: str, lead_id: str, **columns: Any) -> None:
    """Write some columns of a lead (status, owner, the consumed event versions...)."""
    await (await session.connection()).execute(_UPDATE_LEAD, {"b_org_id": org_id, "b_id": lead_id, **columns})


async def remember_past_owner(session: AsyncSession, org_id: str, lead_id: str, before: str | None,
                              after: str | None, now: datetime) -> None:
    await remember_in(session, lead_past_owners, org_id, lead_id, before, after, now)


# ------------------------------------------------------------------ contacts and companies
@dataclass(frozen=True)
class UpsertedContact:
    contact: StoredContact
    # PostgreSQL tells a row this statement inserted (a new person: no lead to find); SQLite cannot (False)
    inserted: bool


def _company_part(company_id: str | None, row: Any) -> StoredCompany:
    return StoredCompany(company_id, *(getattr(row, f) for f in COMPANY_FIELDS))


def _upsert(table: sa.Table, key: list[str], set_: Callable[[Any], dict[str, Any]],
            returning: Callable[[str], list[Any]]) -> dict[str, Any]:
    """Per dialect, an insert that updates the row with the same `key` instead (`set_` of the values it
    brought, `excluded`), returning `returning`."""
    upserts = {}
    for dialect, insert in INSERT_BY_DIALECT.items():
        statement = insert(table)
        upserts[dialect] = statement.on_conflict_do_update(index_elements=key, set_=set_(statement.excluded)) \
            .returning(*returning(dialect))
    return upserts


def _company_merged(excluded: Any) -> dict[str, Any]:
    """A company upserted again: the name and domain it had stay, the size and industry sent replace theirs."""
    return {"name": sa.func.coalesce(companies.c.name, excluded.name),
            "domain": sa.func.coalesce(companies.c.domain, excluded.domain),
            "size": sa.func.coalesce(excluded.size, companies.c.size),
            "industry": sa.func.coalesce(excluded.industry, companies.c.industry),
            "updated_at": excluded.updated_at}


def _contact_merged(excluded: Any) -> dict[str, Any]:
    """A contact upserted again: what was sent replaces, what was not stays; an erased contact is a person again."""
    # sa.null(), not None: a literal None would stop SQLAlchemy batching the executemany
    return {**{f: sa.func.coalesce(excluded[f], contacts.c[f])
               for f in ("first_name", "last_name", "phone", "title", "company_id")},
            "updated_at": excluded.updated_at, "erased_at": sa.null()}


_COMPANY_RETURNED = [companies.c.id, companies.c.dedup_key, *[companies.c[f] for f in COMPANY_FIELDS]]
# PostgreSQL: xmax = 0 marks a row this statement inserted (a new person: no lead to find)
_INSERTED_BY_POSTGRESQL = (sa.literal_column("xmax") == 0).label("inserted")
_CONTACT_RETURNED = [contacts.c.id, contacts.c.company_id, *[contacts.c[f] for f in CONTACT_FIELDS]]
_COMPANY_UPSERT = _upsert(companies, ["org_id", "dedup_key"], _company_merged, lambda _dialect: _COMPANY_RETURNED)
_CONTACT_UPSERT = _upsert(
    contacts, ["org_id", "email"], _contact_merged,
    lambda dialect: [*_CONTACT_RETURNED,
                     _INSERTED_BY_POSTGRESQL if dialect == "postgresql" else sa.false().label("inserted")])


def _dialect(session: AsyncSession) -> str:
    return "sqlite" if session.bind is not None and session.bind.dialect.name == "sqlite" else "postgresql"


async def upsert_companies(session: AsyncSession, org_id: str, wanted: dict[str, dict[str, str | None]],
                           now: datetime) -> dict[str, StoredCompany]:
    """Create or fill the companies of these de-duplication keys; each key's company as a lead holds it."""
    if not wanted:
        return {}
    params = [{"id": new_id(), "org_id": org_id, "dedup_key": key, **{f: values.get(f) for f in COMPANY_FIELDS},
               "created_at": now, "updated_at": now} for key, values in wanted.items()]
    # executemany of one cached statement (batched VALUES); results are keyed, so their order does not matter
    rows = (await (await session.connection()).execute(_COMPANY_UPSERT[_dialect(session)], params)).all()
    return {r.dedup_key: _company_part(r.id, r) for r in rows}


async def upsert_contacts(session: AsyncSession, org_id: str, wanted: dict[str, dict[str, str | None]],
                          now: datetime) -> dict[str, UpsertedContact]:
    """Create or fill the contacts of these emails; by email."""
    if not wanted:
        return {}
    params = [{"id": new_id(), "org_id": org_id, **{f: values.get(f) for f in CONTACT_FIELDS},
               "company_id": values.get("company_id"), "created_at": now, "updated_at": now}
              for values in wanted.values()]
    rows = (await (await session.connection()).execute(_CONTACT_UPSERT[_dialect(session)], params)).all()
    return {r.email: UpsertedContact(StoredContact(r.id, *(getattr(r, f) for f in CONTACT_FIELDS)),
                                     bool(r.inserted)) for r in rows}


@dataclass(frozen=True)
class People:
    """The people of an intake: the open lead of each email as it was before (not locked), and each company
    (by de-duplication key) and contact (by email) as the upserts left them."""
    open_leads: dict[str, StoredLead]
    companies: dict[str, StoredCompany]
    contacts: dict[str, UpsertedContact]


def _one_person_statement(with_company: bool) -> Any:
    """PostgreSQL: one person's intake in one statement — the company upsert, the contact upsert linking it, and
    the person's newest open lead. Every part of a statement reads the snapshot it began with, so the open lead
    (and its contact and company) is read as it was before the upserts, as the separate statements read it;
    the upserts lock company, then contact (the contact's insert reads the company's id)."""
    def param(name: str, column: sa.Column[Any]) -> Any:
        return sa.bindparam(name, type_=column.type)

    company = None
    contact_company: Any = sa.null()
    if with_company:
        company_insert = postgresql.insert(companies).values(
            id=param("company_id", companies.c.id), org_id=param("org_id", companies.c.org_id),
            dedup_key=param("company_key", companies.c.dedup_key),
            **{f: param(f"company_{f}", companies.c[f]) for f in COMPANY_FIELDS},
            created_at=param("now", companies.c.created_at), updated_at=param("now", companies.c.updated_at))
        company = company_insert.on_conflict_do_update(
            index_elements=["org_id", "dedup_key"], set_=_company_merged(company_insert.excluded),
        ).returning(*_COMPANY_RETURNED).cte("upserted_company")
        contact_company = sa.select(company.c.id).scalar_subquery()
    contact_insert = postgresql.insert(contacts).values(
        id=param("contact_id", contacts.c.id), org_id=param("org_id", contacts.c.org_id),
        email=param("email", contacts.c.email),
        **{f: param(f"contact_{f}", contacts.c[f]) for f in CONTACT_FIELDS if f != "email"},
        company_id=contact_company,
        created_at=param("now", contacts.c.created_at), updated_at=param("now", contacts.c.updated_at))
    contact = contact_insert.on_conflict_do_update(
        index_elements=["org_id", "email"], set_=_contact_merged(contact_insert.excluded),
    ).returning(*_CONTACT_RETURNED, _INSERTED_BY_POSTGRESQL).cte("upserted_contact")
    open_lead = _OPEN_LEADS.where(leads.c.email == sa.bindparam("email")) \
        .order_by(leads.c.created_at.desc(), leads.c.id.desc()).limit(1).cte("open_lead")
    columns = [*[contact.c[c.name].label(f"person_contact_{c.name}") for c in _CONTACT_RETURNED],
               contact.c.inserted.label("person_inserted"), *open_lead.c]
    joined = contact.outerjoin(open_lead, sa.true())
    if company is not None:
        columns += [company.c[c.name].label(f"person_company_{c.name}") for c in _COMPANY_RETURNED]
        joined = joined.join(company, sa.true())
    return sa.select(*columns).select_from(joined)


_ONE_PERSON = {True: _one_person_statement(True), False: _one_person_statement(False)}  # with a company or not


async def upsert_people(session: AsyncSession, org_id: str, wanted_companies: dict[str, dict[str, str | None]],
                        wanted_contacts: dict[str, tuple[dict[str, str | None], str | None]],
                        now: datetime) -> People:
    """Read the open lead of each email (not locked), then create or fill the companies of these
    de-duplication keys and the contacts of these emails (each with the company of its key, when it has one).

    One person on PostgreSQL (an API entry, a lone submission) is one statement; otherwise (several people,
    SQLite) a read and an upsert of each kind. Keys are taken in sorted order (a stable lock order)."""
    only_key = next(iter(wanted_contacts.values()))[1] if len(wanted_contacts) == 1 else None
    if len(wanted_contacts) == 1 and _dialect(session) == "postgresql" and set(wanted_companies) <= {only_key}:
        [(email, (contact, key))] = wanted_contacts.items()
        company = wanted_companies.get(key) if key is not None else None
        params = {"org_id": org_id, "email": email, "now": now, "contact_id": new_id(),
                  **{f"contact_{f}": contact.get(f) for f in CONTACT_FIELDS if f != "email"}}
        if company is not None:
            params.update({"company_id": new_id(), "company_key": key,
                           **{f"company_{f}": company.get(f) for f in COMPANY_FIELDS}})
        row = (await (await session.connection()).execute(_ONE_PERSON[company is not None], params)).one()
        m = row._mapping
        upserted = UpsertedContact(StoredContact(m["person_contact_id"], *(m[f"person_contact_{f}"]
                                                                            for f in CONTACT_FIELDS)),
                                   bool(m["person_inserted"]))
        return People(
            open_leads={email: stored_lead(row)} if m["id"] is not None else {},
            companies={key: StoredCompany(m["person_company_id"], *(m[f"person_company_{f}"] for f in COMPANY_FIELDS))}
            if company is not None and key is not None else {},
            contacts={email: upserted})
    open_leads = await open_leads_by_email(session, org_id, sorted(wanted_contacts), for_update=False)
    company_rows = await upsert_companies(session, org_id, dict(sorted(wanted_companies.items())), now)
    contact_rows = await upsert_contacts(session, org_id, {
        email: {**contact, "company_id": company_rows[key].company_id if key is not None else None}
        for email, (contact, key) in sorted(wanted_contacts.items())}, now)
    return People(open_leads, company_rows, contact_rows)


_INSERT_CONTACTS = sa.insert(contacts)


async def insert_contacts(session: AsyncSession, org_id: str, new_leads: list[StoredLead], now: datetime) -> None:
    """The contacts of new leads without an email (no contact to share: each lead has its own)."""
    if new_leads:
        await (await session.connection()).execute(_INSERT_CONTACTS, [
            {"id": lead.contact.contact_id, "org_id": org_id,
             **{f: getattr(lead.contact, f) for f in CONTACT_FIELDS},
             "company_id": lead.company.company_id, "created_at": now, "updated_at": now}
            for lead in new_leads])


async def email_taken(session: AsyncSession, org_id: str, email: str, *, except_contact_id: str | None) -> bool:
    """Whether another contact of the org has this email."""
    return (await session.execute(sa.select(contacts.c.id).where(
        contacts.c.org_id == org_id, contacts.c.email == email,
        contacts.c.id != except_contact_id))).first() is not None


async def update_contact(session: AsyncSession, org_id: str, contact: StoredContact, now: datetime) -> None:
    """Write the lead's contact to its contact row."""
    await session.execute(sa.update(contacts).where(
        contacts.c.id == contact.contact_id, contacts.c.org_id == org_id).values(
        **{f: getattr(contact, f) for f in CONTACT_FIELDS}, updated_at=now))


async def company_id_of_key(session: AsyncSession, org_id: str, dedup_key: str) -> str | None:
    return (await session.execute(sa.select(companies.c.id).where(
        companies.c.org_id == org_id, companies.c.dedup_key == dedup_key))).scalar()


async def update_company(session: AsyncSession, org_id: str, company_id: str, now: datetime,
                         **columns: Any) -> None:
    await session.execute(sa.update(companies).where(companies.c.org_id == org_id, companies.c.id == company_id)
                          .values(**columns, updated_at=now))


async def insert_company(session: AsyncSession, org_id: str, company_id: str, dedup_key: str,
                         fields: dict[str, str | None], now: datetime) -> None:
    await session.execute(sa.insert(companies).values(
        id=company_id, org_id=org_id, dedup_key=dedup_key, **fields, created_at=now, updated_at=now))


async def company_part(session: AsyncSession, org_id: str, company_id: str) -> StoredCompany:
    """The lead's company as the company row now is."""
    row = (await session.execute(sa.select(companies).where(
        companies.c.org_id == org_id, companies.c.id == company_id))).one()
    return _company_part(company_id, row)


# ------------------------------------------------------------------ erasure
@dataclass(frozen=True)
class ErasureTarget:
    lead_id: str
    version: int
    company_id: str | None


async def lock_erasure_targets(session: AsyncSession, org_id: str, lead_id: str,
                               contact_id: str | None) -> list[ErasureTarget]:
    """The lead and every other lead of its contact, locked."""
    condition = leads.c.id == lead_id
    if contact_id:
        condition = sa.or_(condition, leads.c.contact_id == contact_id)
    rows = (await session.execute(sa.select(leads.c.id, leads.c.version, leads.c.company_id).where(
        leads.c.org_id == org_id, condition).with_for_update())).all()
    return [ErasureTarget(r.id, r.version, r.company_id) for r in rows]


async def activity_ids_of(session: AsyncSession, org_id: str, lead_ids: list[str]) -> list[str]:
    return list((await session.execute(sa.select(activities.c.id).where(
        activities.c.org_id == org_id, activities.c.lead_id.in_(lead_ids)))).scalars())


async def scrub_lead(session: AsyncSession, org_id: str, target: ErasureTarget, now: datetime) -> None:
    """Remove the person's data from the lead (a new version)."""
    await session.execute(sa.update(leads).where(leads.c.org_id == org_id, leads.c.id == target.lead_id).values(
        email=None, search_text="", postcode=None, custom_fields={}, utm={}, enrichment={},
        enrichment_status="none", enrichment_next_at=None, enrichment_error=None, company_id=None,
        disqualify_reason=None, score_breakdown=[], erased_at=now, updated_at=now, version=target.version + 1))


async def scrub_contact(session: AsyncSession, org_id: str, contact_id: str, now: datetime) -> None:
    await session.execute(sa.update(contacts).where(contacts.c.id == contact_id, contacts.c.org_id == org_id).values(
        **{f: None for f in CONTACT_FIELDS}, company_id=None, erased_at=now, updated_at=now))


async def scrub_orphaned_companies(session: AsyncSession, org_id: str, company_ids: set[str],
                                   now: datetime) -> None:
    """A company only the erased leads linked tells who the person is (its name, its domain = the email's):
    scrub it. A company other leads still link is theirs too and stays."""
    for company_id in sorted(company_ids):
        still_linked = (await session.execute(sa.select(leads.c.id).where(
            leads.c.org_id == org_id, leads.c.company_id == company_id).limit(1))).first()
        linked_contact = (await session.execute(sa.select(contacts.c.id).where(
            contacts.c.org_id == org_id, contacts.c.company_id == company_id,
            contacts.c.erased_at.is_(None)).limit(1))).first()
        if still_linked is None and linked_contact is None:
            await session.execute(sa.update(companies).where(
                companies.c.id == company_id, companies.c.org_id == org_id).values(
                dedup_key=f"erased:{company_id}", **{f: None for f in COMPANY_FIELDS}, updated_at=now))


async def scrub_records_of(session: AsyncSession, org_id: str, lead_ids: list[str], email: str | None) -> None:
    """Activity subjects and notes of the leads, and the raw submissions and import rows that made them or
    carry the person's email (even ones that never became a lead)."""
    await session.execute(sa.update(activities).where(
        activities.c.org_id == org_id, activities.c.lead_id.in_(lead_ids)).values(subject=None, notes=None))
    await session.execute(sa.update(submissions).where(
        submissions.c.org_id == org_id, submissions.c.lead_id.in_(lead_ids)).values(raw_body="", errors=None,
                                                                                     remote_ip=None))
    await session.execute(sa.update(import_rows).where(
        import_rows.c.org_id == org_id, import_rows.c.lead_id.in_(lead_ids)).values(data={}, errors=None))
    if email:
        escaped = email.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        encoded = quote_plus(email).lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        body = sa.func.lower(submissions.c.raw_body)
        await session.execute(sa.update(submissions).where(
            submissions.c.org_id == org_id,
            sa.or_(body.like(f"%{escaped}%", escape="\\"), body.like(f"%{encoded}%", escape="\\")))
            .values(raw_body="", errors=None, remote_ip=None))
        await session.execute(sa.update(import_rows).where(
            import_rows.c.org_id == org_id,
            sa.func.lower(sa.cast(import_rows.c.data, sa.Text)).like(f"%{escaped}%", escape="\\"))
            .values(data={}, errors=None))
