"""De-duplication rules, pure: which company a lead belongs to, and how a resubmission merges into the
open lead with the same email."""
from __future__ import annotations

from dataclasses import fields, replace

from .enrichment import analyse_email
from .lead import COMPANY_FIELDS, CONTACT_FIELDS, LeadIn
from .stored_lead import StoredCompany, StoredContact, StoredLead, to_cents

# A lead's parts stored as JSON (utm, custom fields), dumped as those columns hold them.
JSON_PARTS = {"utm", "custom_fields"}


def company_key(candidate: LeadIn) -> tuple[str | None, dict[str, str | None]]:
    """The de-duplication key of the candidate's company and the values it brings."""
    company = candidate.company.model_dump()
    insights = analyse_email(candidate.contact.email)
    domain = company.get("domain")
    if domain is None and insights is not None and insights.is_business:
        domain = insights.domain
        company["domain"] = domain
        company["name"] = company.get("name") or insights.company_guess
    if domain:
        return domain, company
    if company.get("name"):
        return "name:" + company["name"].strip().lower(), company
    return None, company


# What a change of a lead names: every field but these bookkeeping ones (and the contact's and company's ids).
_UNCOMPARED = {"contact", "company", "version", "updated_at", "score_breakdown", "enrichment", "enrichment_status"}
_COMPARED = tuple(f.name for f in fields(StoredLead) if f.name not in _UNCOMPARED)
# The lead fields a resubmission overwrites when it sends them.
_RESUBMITTED = ("country", "region", "postcode", "timezone", "language", "product_line", "currency",
                "expected_close_date")


def changed_fields(before: StoredLead, after: StoredLead) -> list[str]:
    """The fields (by API path: `region`, `contact.title`) whose values differ, sorted."""
    changed = [f for f in _COMPARED if getattr(before, f) != getattr(after, f)]
    changed += [f"contact.{f}" for f in CONTACT_FIELDS if getattr(before.contact, f) != getattr(after.contact, f)]
    changed += [f"company.{f}" for f in COMPANY_FIELDS if getattr(before.company, f) != getattr(after.company, f)]
    return sorted(changed)


def merge_into(existing: StoredLead, candidate: LeadIn, contact: StoredContact | None,
               company: StoredCompany | None) -> StoredLead:
    """The open lead updated by a resubmission. Its owner and team stay: ownership changes only through
    assignment-service (its decisions come back as LeadAssigned), never by entering the lead again."""
    sent = {key: value for key in _RESUBMITTED if (value := getattr(candidate, key)) is not None}
    if candidate.value is not None:
        sent["value"] = to_cents(candidate.value)
    parts = candidate.model_dump(mode="json", include=JSON_PARTS)  # as the JSON columns hold them
    return replace(existing, **sent, utm={**existing.utm, **parts["utm"]},
                   custom_fields={**existing.custom_fields, **parts["custom_fields"]},
                   contact=existing.contact if contact is None else contact,
                   company=existing.company if company is None else company)


def someone_elses_lead(lead_id: str, owner_id: str | None) -> str:
    """Why a rep's entry (API or own import) of a prospect that is another rep's open lead is refused."""
    owner = f"rep '{owner_id}'" if owner_id else "nobody yet (being routed)"
    return (f"an open lead with this email exists ({lead_id}), owned by {owner}; "
            "ask a manager or admin to merge or reassign it")
