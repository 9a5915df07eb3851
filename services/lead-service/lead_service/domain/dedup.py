"""De-duplication rules, pure: which company a lead belongs to, and how a resubmission merges into the
open lead with the same email."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from .enrichment import analyse_email
from .lead import LeadIn


def company_key(candidate: LeadIn) -> tuple[str | None, dict[str, Any]]:
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


def _flatten(lead: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in lead.items() if k not in ("contact", "company")}
    flat.update({f"contact.{k}": v for k, v in lead["contact"].items() if k != "contact_id"})
    flat.update({f"company.{k}": v for k, v in lead["company"].items() if k != "company_id"})
    return flat


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    a, b = _flatten(before), _flatten(after)
    ignore = {"version", "updated_at", "score_breakdown", "enrichment", "enrichment_status"}
    return sorted(k for k in b if k not in ignore and a.get(k) != b.get(k))


def merge_into(existing: dict[str, Any], candidate: LeadIn, contact: dict[str, Any] | None,
               company: dict[str, Any] | None) -> dict[str, Any]:
    """The open lead updated by a resubmission. Its owner and team stay: ownership changes only through
    assignment-service (its decisions come back as LeadAssigned), never by entering the lead again."""
    merged = {**existing, "contact": dict(existing["contact"]), "company": dict(existing["company"])}
    data = candidate.model_dump(mode="json", exclude_unset=False)
    for key in ("country", "region", "postcode", "timezone", "language", "product_line", "value", "currency",
                "expected_close_date"):
        if data.get(key) is not None:
            merged[key] = data[key]
    if candidate.value is not None:
        merged["value"] = str(candidate.value.quantize(Decimal("0.01")))
    merged["utm"] = {**(existing.get("utm") or {}), **data["utm"]}
    merged["custom_fields"] = {**(existing.get("custom_fields") or {}), **data["custom_fields"]}
    if contact is not None:
        merged["contact"] = {k: v for k, v in contact.items() if not k.startswith("_")}
    if company is not None:
        merged["company"] = company
    return merged




def someone_elses_lead(lead_id: str, owner_id: str | None) -> str:
    """Why a rep's entry (API or own import) of a prospect that is another rep's open lead is refused."""
    owner = f"rep '{owner_id}'" if owner_id else "nobody yet (being routed)"
    return (f"an open lead with this email exists ({lead_id}), owned by {owner}; "
            "ask a manager or admin to merge or reassign it")
