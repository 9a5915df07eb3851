"""Accepting leads in bulk or one at a time: the single path used by the API, web forms and CSV import.

De-duplication: contacts on (org, email), companies on (org, domain or name), and the same email in the same
org updates its open lead (logging a resubmission activity) instead of creating a second one. Every lead
is scored and enriched from its email address; the events go to the outbox in the caller's transaction.
"""
from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from salesflow_shared.events import ActivityLoggedV1, LeadCreatedV1, LeadUpdatedV1
from salesflow_shared.ownership import remember_past_owner
from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import activities, companies, contacts, custom_field_defs, lead_past_owners, leads, scoring_rules
from ..domain.custom_fields import CustomFieldDef
from ..domain.dedup import changed_fields, company_key, merge_into
from ..domain.enrichment import analyse_email
from ..domain.lead import OPEN_STATUSES, LeadIn, search_text
from ..domain.scoring import RULE_CONFIG, ScoringRule, score_lead
from .views import COMPANY_FIELDS, CONTACT_FIELDS, iso, lead_select, row_to_lead, snapshot


async def core(uow: UnitOfWork) -> Any:
    """The transaction's connection: Core statements run on it skip the ORM session's per-statement work
    (a hot-path CPU cost), in the very same transaction."""
    return await uow.session.connection()


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Candidate:
    lead: LeadIn
    origin: str = "api"  # api, form, import
    form_id: str | None = None
    import_id: str | None = None
    submission_id: str | None = None


@dataclass
class Outcome:
    lead: dict[str, Any]
    created: bool
    changed: list[str] = field(default_factory=list)


@dataclass
class OrgSetup:
    rules: list[ScoringRule]
    custom_defs: dict[str, CustomFieldDef]
    enrichment_provider: bool


async def load_org_setup(session: Any, org_id: str, enrichment_provider: bool) -> OrgSetup:
    rows = (await session.execute(sa.select(scoring_rules).where(
        scoring_rules.c.org_id == org_id, scoring_rules.c.enabled.is_(True)).order_by(
        scoring_rules.c.created_at, scoring_rules.c.id))).all()
    rules = [ScoringRule(r.id, r.name, r.points, RULE_CONFIG.validate_python(r.config)) for r in rows]
    defs = (await session.execute(sa.select(custom_field_defs).where(custom_field_defs.c.org_id == org_id))).all()
    return OrgSetup(rules, {d.key: CustomFieldDef(d.key, d.type, tuple(d.options or ()), d.required) for d in defs},
                    enrichment_provider)


def rescore(lead: dict[str, Any], setup: OrgSetup) -> None:
    insights = analyse_email(lead["contact"].get("email"))
    result = score_lead(lead, insights, setup.rules)
    lead["score"] = result.score
    lead["score_breakdown"] = [line.as_dict() for line in result.breakdown]


def lead_columns(lead: dict[str, Any]) -> dict[str, Any]:
    """The leads-table values of an API-shaped lead."""
    contact, company = lead["contact"], lead["company"]
    value = lead.get("value")
    close = lead.get("expected_close_date")
    return {
        "contact_id": contact.get("contact_id"), "company_id": company.get("company_id"),
        "email": contact.get("email"),
        "search_text": search_text(contact.get("first_name"), contact.get("last_name"), contact.get("email"),
                                   company.get("name")),
        "country": lead.get("country"), "region": lead.get("region"), "postcode": lead.get("postcode"),
        "timezone": lead.get("timezone"), "language": lead.get("language"),
        "product_line": lead.get("product_line"),
        "value": None if value is None else Decimal(str(value)), "currency": lead.get("currency"),
        "expected_close_date": date.fromisoformat(close) if isinstance(close, str) else close,
        "source": lead["source"], "utm": lead.get("utm") or {}, "custom_fields": lead.get("custom_fields") or {},
        "status": lead["status"], "disqualify_reason": lead.get("disqualify_reason"),
        "owner_id": lead.get("owner_id"), "team_id": lead.get("team_id"),
        "score": lead.get("score") or 0, "score_breakdown": lead.get("score_breakdown") or [],
        "form_id": lead.get("form_id"), "import_id": lead.get("import_id"),
        "enrichment": lead.get("enrichment") or {}, "enrichment_status": lead.get("enrichment_status") or "none",
        "version": lead["version"],
    }


@functools.cache
def _company_upsert(dialect: str) -> Any:
    statement = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(companies)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["org_id", "dedup_key"],
        set_={"name": sa.func.coalesce(companies.c.name, excluded.name),
              "domain": sa.func.coalesce(companies.c.domain, excluded.domain),
              "size": sa.func.coalesce(excluded.size, companies.c.size),
              "industry": sa.func.coalesce(excluded.industry, companies.c.industry),
              "updated_at": excluded.updated_at},
    ).returning(companies.c.id, companies.c.dedup_key, *[companies.c[f] for f in COMPANY_FIELDS])


@functools.cache
def _contact_upsert(dialect: str) -> Any:
    statement = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(contacts)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["org_id", "email"],
        # sa.null(), not None: a literal None would stop SQLAlchemy batching the executemany
        set_={**{f: sa.func.coalesce(excluded[f], contacts.c[f]) for f in ("first_name", "last_name", "phone",
                                                                           "title", "company_id")},
              "updated_at": excluded.updated_at, "erased_at": sa.null()},
    ).returning(contacts.c.id, contacts.c.company_id, *[contacts.c[f] for f in CONTACT_FIELDS],
                # PostgreSQL: xmax = 0 marks a row this statement inserted (a new person: no lead to find)
                (sa.literal_column("xmax") == 0 if dialect == "postgresql" else sa.false()).label("inserted"))


async def _upsert_companies(uow: UnitOfWork, org_id: str, wanted: dict[str, dict[str, Any]],
                            now: datetime) -> dict[str, dict[str, Any]]:
    if not wanted:
        return {}
    params = [{"id": new_id(), "org_id": org_id, "dedup_key": key, **{f: values.get(f) for f in COMPANY_FIELDS},
               "created_at": now, "updated_at": now} for key, values in wanted.items()]
    # executemany of one cached statement (batched VALUES); results are keyed, so their order does not matter
    rows = (await (await core(uow)).execute(_company_upsert(uow.dialect), params)).all()
    return {r.dedup_key: {"company_id": r.id, **{f: getattr(r, f) for f in COMPANY_FIELDS}} for r in rows}


async def _upsert_contacts(uow: UnitOfWork, org_id: str, wanted: dict[str, dict[str, Any]],
                           now: datetime) -> dict[str, dict[str, Any]]:
    if not wanted:
        return {}
    params = [{"id": new_id(), "org_id": org_id, **{f: values.get(f) for f in CONTACT_FIELDS},
               "company_id": values.get("company_id"), "created_at": now, "updated_at": now}
              for values in wanted.values()]
    rows = (await (await core(uow)).execute(_contact_upsert(uow.dialect), params)).all()
    return {r.email: {"contact_id": r.id, **{f: getattr(r, f) for f in CONTACT_FIELDS}, "_company_id": r.company_id,
                      "_inserted": bool(r.inserted)} for r in rows}


async def open_leads_by_email(session: Any, org_id: str, emails: list[str],
                              for_update: bool = True) -> dict[str, dict[str, Any]]:
    if not emails:
        return {}
    # one email (a form submission) needs no expanding IN: a plain comparison compiles once and is cached
    by_email = leads.c.email == emails[0] if len(emails) == 1 else leads.c.email.in_(emails)
    query = lead_select().where(leads.c.org_id == org_id, by_email,
                                leads.c.status.in_(OPEN_STATUSES), leads.c.deleted_at.is_(None),
                                leads.c.erased_at.is_(None)).order_by(leads.c.created_at, leads.c.id)
    if for_update:
        query = query.with_for_update(of=leads)
    found: dict[str, dict[str, Any]] = {}
    for row in (await (await session.connection()).execute(query)).all():
        found[row.email] = row_to_lead(row)  # the newest open lead wins
    return found


def _fresh(candidate: LeadIn, contact: dict[str, Any], company: dict[str, Any] | None, now: datetime,
           origin: Candidate) -> dict[str, Any]:
    data = candidate.model_dump(mode="json")
    return {
        "id": new_id(), "contact": {k: v for k, v in contact.items() if not k.startswith("_")},
        "company": company or {"company_id": None, **{f: None for f in COMPANY_FIELDS}},
        **{k: data.get(k) for k in ("country", "region", "postcode", "timezone", "language", "product_line",
                                    "currency", "expected_close_date", "source", "utm", "custom_fields",
                                    "owner_id", "team_id")},
        "value": None if candidate.value is None else str(candidate.value.quantize(Decimal("0.01"))),
        "status": "open", "disqualify_reason": None, "score": 0, "score_breakdown": [],
        "form_id": origin.form_id, "import_id": origin.import_id, "version": 1,
        "created_at": iso(now), "updated_at": iso(now), "erased_at": None,
    }


def _enrich_inline(lead: dict[str, Any], setup: OrgSetup) -> None:
    insights = analyse_email(lead["contact"].get("email"))
    lead["enrichment"] = {**(lead.get("enrichment") or {}), "email": insights.as_dict() if insights else None}
    if insights is not None and setup.enrichment_provider and insights.is_business:
        lead["enrichment_status"] = "pending"
    else:
        lead.setdefault("enrichment_status", "none")
        if lead["enrichment_status"] not in ("pending", "done"):
            lead["enrichment_status"] = "none"


def preview(candidate: LeadIn, setup: OrgSetup, now: datetime) -> dict[str, Any]:
    """The lead as intake would create it — the email's insights and the score from the org's scoring rules,
    the facts routing reads at `lead_created` — stored nowhere. (The enrichment provider answers later, after
    routing, for real leads too.)"""
    contact = {"contact_id": None, **candidate.contact.model_dump()}
    _, company = company_key(candidate)
    lead = _fresh(candidate, contact, {"company_id": None, **company}, now, Candidate(candidate))
    _enrich_inline(lead, setup)
    rescore(lead, setup)
    return lead


async def ingest(uow: UnitOfWork, org_id: str, candidates: list[Candidate], setup: OrgSetup,
                 now: datetime) -> list[Outcome]:
    """Create or update one lead per candidate, in order, inside the caller's transaction."""

    emails = sorted({c.lead.contact.email for c in candidates if c.lead.contact.email})
    # Lock order is company → contact → lead in every ingest (no lock taken by this first read), so
    # concurrent submissions of one person queue up instead of deadlocking.
    seen = await open_leads_by_email(uow.session, org_id, emails, for_update=False)

    company_keys: list[str | None] = []
    wanted_companies: dict[str, dict[str, Any]] = {}
    for candidate in candidates:
        key, values = company_key(candidate.lead)
        company_keys.append(key)
        if key is not None:
            merged = wanted_companies.setdefault(key, {})
            merged.update({k: v for k, v in values.items() if v is not None})
    company_rows = await _upsert_companies(uow, org_id, dict(sorted(wanted_companies.items())), now)

    wanted_contacts: dict[str, dict[str, Any]] = {}
    for candidate, key in zip(candidates, company_keys, strict=True):
        email = candidate.lead.contact.email
        if email is None:
            continue
        merged = wanted_contacts.setdefault(email, {"email": email})
        merged.update({k: v for k, v in candidate.lead.contact.model_dump().items() if v is not None})
        if key is not None:
            merged["company_id"] = company_rows[key]["company_id"]
    # Sorted keys keep the lock order stable between concurrent batches.
    contact_rows = await _upsert_contacts(uow, org_id, dict(sorted(wanted_contacts.items())), now)
    # Lock the open leads now. A contact we did not insert but with no open lead seen above may belong to a
    # concurrent submission of the same person that committed while we waited on the contact row: looking
    # again finds its lead, which is then updated rather than duplicated. SQLite cannot tell an inserted
    # contact from an updated one (`_inserted` is always False there), so every email is looked at again:
    # its transaction began with the contact upsert, which waited for the concurrent writer to commit.
    to_lock = [e for e, row in contact_rows.items() if e in seen or not row["_inserted"]]
    existing = await open_leads_by_email(uow.session, org_id, sorted(to_lock))
    for email, lead in existing.items():
        earlier = seen.get(email)
        if earlier is not None and earlier["id"] == lead["id"]:
            lead["contact"] = earlier["contact"]  # the state before this ingest's contact upsert, for `changed`

    outcomes: list[Outcome] = []
    inserts: dict[str, dict[str, Any]] = {}
    updates: dict[str, dict[str, Any]] = {}
    resubmitted: list[tuple[dict[str, Any], Candidate]] = []
    owner_changes: list[tuple[str, str | None, str | None]] = []
    for candidate, key in zip(candidates, company_keys, strict=True):
        email = candidate.lead.contact.email
        company = company_rows.get(key) if key is not None else None
        if email is not None:
            contact = contact_rows[email]
        else:
            contact = {"contact_id": new_id(), **candidate.lead.contact.model_dump(), "_new": True}
        before = existing.get(email) if email else None
        if before is None:
            lead = _fresh(candidate.lead, contact, company, now, candidate)
            _enrich_inline(lead, setup)
            rescore(lead, setup)
            inserts[lead["id"]] = lead
            if email:
                existing[email] = lead
            outcomes.append(Outcome(lead, created=True))
            continue
        lead = merge_into(before, candidate.lead, contact, company)
        owner_changes.append((lead["id"], before.get("owner_id"), lead.get("owner_id")))
        _enrich_inline(lead, setup)
        rescore(lead, setup)
        changed = changed_fields(before, lead)
        if changed:
            lead["version"] = before["version"] + (0 if lead["id"] in inserts else 1)
            lead["updated_at"] = iso(now)
        assert email, "an existing lead is only ever found by its email"
        existing[email] = lead
        if lead["id"] in inserts:
            inserts[lead["id"]] = lead
            outcomes.append(Outcome(lead, created=False, changed=changed))
        else:
            if changed:
                updates[lead["id"]] = lead
            outcomes.append(Outcome(lead, created=False, changed=changed))
        if candidate.origin == "form":
            resubmitted.append((lead, candidate))

    new_contacts = [{"id": o.lead["contact"]["contact_id"], "org_id": org_id,
                     **{f: o.lead["contact"].get(f) for f in CONTACT_FIELDS},
                     "company_id": o.lead["company"].get("company_id"), "created_at": now, "updated_at": now}
                    for o in outcomes if o.created and o.lead["contact"].get("email") is None]
    if new_contacts:
        await (await core(uow)).execute(sa.insert(contacts), new_contacts)
    if inserts:
        await (await core(uow)).execute(sa.insert(leads), [
            {"id": lead["id"], "org_id": org_id, **lead_columns(lead), "created_at": now, "updated_at": now}
            for lead in inserts.values()])
    for lead in updates.values():
        await uow.session.execute(sa.update(leads).where(leads.c.id == lead["id"], leads.c.org_id == org_id)
                                  .values(**lead_columns(lead), updated_at=now))
    for lead_id, before_owner, after_owner in owner_changes:
        await remember_past_owner(uow.session, lead_past_owners, org_id, lead_id, before_owner, after_owner, now)
    if resubmitted:
        rows = []
        for lead, candidate in resubmitted:
            activity_id = new_id()
            rows.append({"id": activity_id, "org_id": org_id, "lead_id": lead["id"], "kind": "note",
                         "rep_id": None, "occurred_at": now, "duration_seconds": None, "outcome": None,
                         "subject": "form resubmitted", "notes": f"form {candidate.form_id}"
                         + (f", submission {candidate.submission_id}" if candidate.submission_id else ""),
                         "source": "form", "external_id": None, "created_at": now})
            uow.publish(ActivityLoggedV1(activity_id=activity_id, lead_id=lead["id"], kind="note",
                                         rep_id=lead.get("owner_id"), occurred_at=now, subject="form resubmitted",
                                         source="form"),
                        org_id=org_id, subject_id=activity_id)
        await (await core(uow)).execute(sa.insert(activities), rows)

    published: set[str] = set()
    for outcome in reversed(outcomes):  # one event per lead, carrying its final state
        lead = outcome.lead
        if lead["id"] in published:
            continue
        published.add(lead["id"])
        if lead["id"] in inserts:
            uow.publish(LeadCreatedV1(lead=snapshot(lead)), org_id=org_id, subject_id=lead["id"],
                        subject_version=lead["version"])
        elif lead["id"] in updates:
            cause = {"form": "form_resubmitted", "import": "import"}.get(outcomes_origin(candidates, outcomes,
                                                                                        lead["id"]), "edit")
            uow.publish(LeadUpdatedV1(lead=snapshot(lead), changed=outcome.changed, cause=cause),
                        org_id=org_id, subject_id=lead["id"], subject_version=lead["version"])
    return outcomes


def outcomes_origin(candidates: list[Candidate], outcomes: list[Outcome], lead_id: str) -> str:
    for candidate, outcome in zip(reversed(candidates), reversed(outcomes), strict=True):
        if outcome.lead["id"] == lead_id:
            return candidate.origin
    return "api"
