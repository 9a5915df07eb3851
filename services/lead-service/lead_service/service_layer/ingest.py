"""Accepting leads in bulk or one at a time: the single path used by the API, web forms and CSV import.

De-duplication: contacts on (org, email), companies on (org, domain or name), and the same email in the same
org updates its open lead (logging a resubmission activity) instead of creating a second one. Every lead
is scored and enriched from its email address; the events go to the outbox in the caller's transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
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
from ..domain.dedup import changed_fields, company_key, merge_into
from ..domain.enrichment import analyse_email
from ..domain.lead import COMPANY_FIELDS, LeadIn
from ..domain.scoring import ScoringRule, score_lead
from ..domain.times import iso
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
    lead: dict[str, Any]
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


def rescore(lead: dict[str, Any], setup: OrgSetup) -> None:
    lead["score"], lead["score_breakdown"] = scored(lead, setup)


def scored(lead: dict[str, Any], setup: OrgSetup) -> tuple[int, list[dict[str, Any]]]:
    """The score of the API-shaped lead (rules name its fields by their API path) and its breakdown."""
    result = score_lead(lead, analyse_email(lead["contact"].get("email")), setup.rules)
    return result.score, [line.as_dict() for line in result.breakdown]


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
    company_rows = await lead_repo.upsert_companies(uow.session, org_id, dict(sorted(wanted_companies.items())), now)

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
    contact_rows = await lead_repo.upsert_contacts(uow.session, org_id, dict(sorted(wanted_contacts.items())), now)
    # Lock the open leads now. A contact we did not insert but with no open lead seen above may belong to a
    # concurrent submission of the same person that committed while we waited on the contact row: looking
    # again finds its lead, which is then updated rather than duplicated. SQLite cannot tell an inserted
    # contact from an updated one (`inserted` is always False there), so every email is looked at again:
    # its transaction began with the contact upsert, which waited for the concurrent writer to commit.
    to_lock = [e for e, row in contact_rows.items() if e in seen or not row.inserted]
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
            contact = contact_rows[email].contact
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

    await lead_repo.insert_contacts(uow.session, org_id, [o.lead for o in outcomes
                                                          if o.created and o.lead["contact"].get("email") is None], now)
    await lead_repo.insert_leads(uow.session, org_id, list(inserts.values()), now)
    for lead in updates.values():
        await lead_repo.save_lead(uow.session, org_id, lead, now)
    for lead_id, before_owner, after_owner in owner_changes:
        await lead_repo.remember_past_owner(uow.session, org_id, lead_id, before_owner, after_owner, now)
    if resubmitted:
        notes: list[Activity] = []
        for lead, candidate in resubmitted:
            note = Activity(id=new_id(), lead_id=lead["id"], kind="note", rep_id=None, occurred_at=now,
                            duration_seconds=None, outcome=None, subject="form resubmitted",
                            notes=f"form {candidate.form_id}"
                            + (f", submission {candidate.submission_id}" if candidate.submission_id else ""),
                            source="form", created_at=now)
            notes.append(note)
            uow.publish(ActivityLoggedV1(activity_id=note.id, lead_id=lead["id"], kind="note",
                                         rep_id=lead.get("owner_id"), occurred_at=now, subject="form resubmitted",
                                         source="form"),
                        org_id=org_id, subject_id=note.id)
        await insert_activities(uow.session, org_id, notes)

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
