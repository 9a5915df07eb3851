"""Accepting leads in bulk or one at a time: the single path used by the API, web forms and CSV import.

De-duplication: contacts on (org, email), companies on (org, domain or name), and the same email in the same
org updates its open lead (logging a resubmission activity) instead of creating a second one. Every lead
is scored and enriched from its email address; the events go to the outbox in the caller's transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.events import ActivityLoggedV1, LeadCreatedV1, LeadUpdatedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import leads as lead_repo
from ..adapters.repository import new_id
from ..adapters.repository import scoring as scoring_repo
from ..adapters.repository.leads import open_leads_by_email
from ..adapters.repository.records import insert_activities
from ..domain.activity import Activity
from ..domain.custom_fields import CustomFieldDef
from ..domain.dedup import JSON_PARTS, changed_fields, company_key, merge_into
from ..domain.enrichment import EmailInsights, analyse_email
from ..domain.lead import COMPANY_FIELDS, CONTACT_FIELDS, ContactIn, LeadIn
from ..domain.scoring import ScoringRule, score_lead
from ..domain.stored_lead import NO_COMPANY, StoredCompany, StoredContact, StoredLead, to_cents
from .views import snapshot


@dataclass
class Candidate:
    lead: LeadIn
    origin: str = "api"  # api, form, import
    form_id: str | None = None
    import_id: str | None = None
    submission_id: str | None = None


@dataclass
class Outcome:
    lead: StoredLead
    created: bool
    changed: list[str] = field(default_factory=list)


@dataclass
class OrgSetup:
    rules: list[ScoringRule]
    custom_defs: dict[str, CustomFieldDef]
    enrichment_provider: bool


async def load_org_setup(session: AsyncSession, org_id: str, enrichment_provider: bool) -> OrgSetup:
    return OrgSetup(await scoring_repo.enabled_rules(session, org_id),
                    await scoring_repo.custom_field_defs_of(session, org_id), enrichment_provider)


def scored(lead: StoredLead, setup: OrgSetup,
           insights: EmailInsights | None = None) -> tuple[int, list[dict[str, Any]]]:
    """The lead's score by the org's rules (which name its fields by their API path) and its breakdown
    (`insights`: of the lead's email, when the caller has them already)."""
    if insights is None:
        insights = analyse_email(lead.contact.email)
    result = score_lead(lead, insights, setup.rules)
    return result.score, [line.as_dict() for line in result.breakdown]


def rescored(lead: StoredLead, setup: OrgSetup) -> StoredLead:
    score, breakdown = scored(lead, setup)
    return replace(lead, score=score, score_breakdown=breakdown)


def _contact_of(contact: ContactIn) -> StoredContact:
    """The contact of a lead without an email: its own, new (no contact to share)."""
    return StoredContact(new_id(), contact.first_name, contact.last_name, contact.email, contact.phone,
                         contact.title)


def _fresh(candidate: LeadIn, contact: StoredContact, company: StoredCompany | None, now: datetime,
           origin: Candidate) -> StoredLead:
    parts = candidate.model_dump(mode="json", include=JSON_PARTS)  # as the JSON columns hold them
    return StoredLead(
        id=new_id(), contact=contact, company=NO_COMPANY if company is None else company,
        country=candidate.country, region=candidate.region, postcode=candidate.postcode,
        timezone=candidate.timezone, language=candidate.language, product_line=candidate.product_line,
        value=None if candidate.value is None else to_cents(candidate.value), currency=candidate.currency,
        expected_close_date=candidate.expected_close_date, source=candidate.source,
        utm=parts["utm"], custom_fields=parts["custom_fields"], status="open", disqualify_reason=None,
        owner_id=candidate.owner_id, team_id=candidate.team_id, score=0, score_breakdown=[],
        enrichment={}, enrichment_status="none", form_id=origin.form_id, import_id=origin.import_id,
        version=1, created_at=now, updated_at=now, erased_at=None)


def _enriched_and_scored(lead: StoredLead, setup: OrgSetup) -> StoredLead:
    """The lead with its email's insights (enrichment pending when the provider will look the business up)
    and its score."""
    insights = analyse_email(lead.contact.email)
    if insights is not None and setup.enrichment_provider and insights.is_business:
        status = "pending"
    else:
        status = lead.enrichment_status if lead.enrichment_status in ("pending", "done") else "none"
    score, breakdown = scored(lead, setup, insights)
    return replace(lead, enrichment={**lead.enrichment, "email": insights.as_dict() if insights else None},
                   enrichment_status=status, score=score, score_breakdown=breakdown)


def preview(candidate: LeadIn, setup: OrgSetup, now: datetime) -> StoredLead:
    """The lead as intake would create it — the email's insights and the score from the org's scoring rules,
    the facts routing reads at `lead_created` — stored nowhere. (The enrichment provider answers later, after
    routing, for real leads too.)"""
    contact = StoredContact(None, *(getattr(candidate.contact, f) for f in CONTACT_FIELDS))
    _, company = company_key(candidate)
    lead = _fresh(candidate, contact, StoredCompany(None, *(company.get(f) for f in COMPANY_FIELDS)), now,
                  Candidate(candidate))
    return _enriched_and_scored(lead, setup)


async def ingest(uow: UnitOfWork, org_id: str, candidates: list[Candidate], setup: OrgSetup,
                 now: datetime) -> list[Outcome]:
    """Create or update one lead per candidate, in order, inside the caller's transaction."""

    company_keys: list[str | None] = []
    wanted_companies: dict[str, dict[str, str | None]] = {}
    for candidate in candidates:
        key, values = company_key(candidate.lead)
        company_keys.append(key)
        if key is not None:
            merged = wanted_companies.setdefault(key, {})
            merged.update({k: v for k, v in values.items() if v is not None})
    wanted_contacts: dict[str, tuple[dict[str, str | None], str | None]] = {}  # email → values, company key
    for candidate, key in zip(candidates, company_keys, strict=True):
        email = candidate.lead.contact.email
        if email is None:
            continue
        merged, earlier_key = wanted_contacts.get(email, ({"email": email}, None))
        merged.update({f: v for f in CONTACT_FIELDS if (v := getattr(candidate.lead.contact, f)) is not None})
        wanted_contacts[email] = (merged, key if key is not None else earlier_key)
    # Lock order is company → contact → lead in every ingest (the open leads are read first, unlocked), so
    # concurrent submissions of one person queue up instead of deadlocking.
    people = await lead_repo.upsert_people(uow.session, org_id, wanted_companies, wanted_contacts, now)
    seen, company_rows, contact_rows = people.open_leads, people.companies, people.contacts
    # Lock the open leads now. A contact we did not insert but with no open lead seen above may belong to a
    # concurrent submission of the same person that committed while we waited on the contact row: looking
    # again finds its lead, which is then updated rather than duplicated. SQLite cannot tell an inserted
    # contact from an updated one (`inserted` is always False there), so every email is looked at again:
    # its transaction began with the contact upsert, which waited for the concurrent writer to commit.
    to_lock = [e for e, row in contact_rows.items() if e in seen or not row.inserted]
    existing = await open_leads_by_email(uow.session, org_id, sorted(to_lock))
    for email, lead in existing.items():
        earlier = seen.get(email)
        if earlier is not None and earlier.id == lead.id:
            # the contact before this ingest's contact upsert, for `changed`
            existing[email] = replace(lead, contact=earlier.contact)

    outcomes: list[Outcome] = []
    inserts: dict[str, StoredLead] = {}
    updates: dict[str, StoredLead] = {}
    resubmitted: list[tuple[StoredLead, Candidate]] = []
    owner_changes: list[tuple[str, str | None, str | None]] = []
    for candidate, key in zip(candidates, company_keys, strict=True):
        email = candidate.lead.contact.email
        company = company_rows.get(key) if key is not None else None
        if email is not None:
            contact = contact_rows[email].contact
        else:
            contact = _contact_of(candidate.lead.contact)
        before = existing.get(email) if email else None
        if before is None:
            lead = _enriched_and_scored(_fresh(candidate.lead, contact, company, now, candidate), setup)
            inserts[lead.id] = lead
            if email:
                existing[email] = lead
            outcomes.append(Outcome(lead, created=True))
            continue
        lead = _enriched_and_scored(merge_into(before, candidate.lead, contact, company), setup)
        owner_changes.append((lead.id, before.owner_id, lead.owner_id))
        changed = changed_fields(before, lead)
        if changed:
            lead = replace(lead, version=before.version + (0 if lead.id in inserts else 1), updated_at=now)
        assert email, "an existing lead is only ever found by its email"
        existing[email] = lead
        if lead.id in inserts:
            inserts[lead.id] = lead
            outcomes.append(Outcome(lead, created=False, changed=changed))
        else:
            if changed:
                updates[lead.id] = lead
            outcomes.append(Outcome(lead, created=False, changed=changed))
        if candidate.origin == "form":
            resubmitted.append((lead, candidate))

    await lead_repo.insert_contacts(uow.session, org_id, [o.lead for o in outcomes
                                                          if o.created and o.lead.contact.email is None], now)
    await lead_repo.insert_leads(uow.session, org_id, list(inserts.values()), now)
    for lead in updates.values():
        await lead_repo.save_lead(uow.session, org_id, lead, now)
    for lead_id, before_owner, after_owner in owner_changes:
        await lead_repo.remember_past_owner(uow.session, org_id, lead_id, before_owner, after_owner, now)
    if resubmitted:
        notes: list[Activity] = []
        for lead, candidate in resubmitted:
            note = Activity(id=new_id(), lead_id=lead.id, kind="note", rep_id=None, occurred_at=now,
                            duration_seconds=None, outcome=None, subject="form resubmitted",
                            notes=f"form {candidate.form_id}"
                            + (f", submission {candidate.submission_id}" if candidate.submission_id else ""),
                            source="form", created_at=now)
            notes.append(note)
            uow.publish(ActivityLoggedV1(activity_id=note.id, lead_id=lead.id, kind="note",
                                         rep_id=lead.owner_id, occurred_at=now, subject="form resubmitted",
                                         source="form"),
                        org_id=org_id, subject_id=note.id)
        await insert_activities(uow.session, org_id, notes)

    published: set[str] = set()
    for outcome in reversed(outcomes):  # one event per lead, carrying its final state
        lead = outcome.lead
        if lead.id in published:
            continue
        published.add(lead.id)
        if lead.id in inserts:
            uow.publish(LeadCreatedV1(lead=snapshot(lead)), org_id=org_id, subject_id=lead.id,
                        subject_version=lead.version)
        elif lead.id in updates:
            cause = {"form": "form_resubmitted", "import": "import"}.get(outcomes_origin(candidates, outcomes,
                                                                                        lead.id), "edit")
            uow.publish(LeadUpdatedV1(lead=snapshot(lead), changed=outcome.changed, cause=cause),
                        org_id=org_id, subject_id=lead.id, subject_version=lead.version)
    return outcomes


def outcomes_origin(candidates: list[Candidate], outcomes: list[Outcome], lead_id: str) -> str:
    for candidate, outcome in zip(reversed(candidates), reversed(outcomes), strict=True):
        if outcome.lead.id == lead_id:
            return candidate.origin
    return "api"
