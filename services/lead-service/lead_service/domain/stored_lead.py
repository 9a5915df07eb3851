"""A lead as it is stored: every column lead-service reads, typed, with its contact and company.

The repository's lead loaders build it from a row; `as_api_dict` is the one place that turns it into the
lead's API shape (what the API answers and LeadCreated/LeadUpdated snapshot). The "after" state of a change
is `dataclasses.replace(lead, ...)`: the record is frozen, so a lead read stays the lead read.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .lead import COMPANY_FIELDS, CONTACT_FIELDS, LeadStatus
from .times import iso

CENTS = Decimal("0.01")


@dataclass(frozen=True)
class StoredContact:
    contact_id: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    title: str | None

    def as_api_dict(self) -> dict[str, Any]:
        return {"contact_id": self.contact_id, **{f: getattr(self, f) for f in CONTACT_FIELDS}}


@dataclass(frozen=True)
class StoredCompany:
    company_id: str | None
    name: str | None
    domain: str | None
    size: str | None
    industry: str | None

    def as_api_dict(self) -> dict[str, Any]:
        return {"company_id": self.company_id, **{f: getattr(self, f) for f in COMPANY_FIELDS}}


NO_COMPANY = StoredCompany(None, None, None, None, None)  # a lead whose company nothing tells


@dataclass(frozen=True)
class StoredLead:
    id: str
    contact: StoredContact
    company: StoredCompany
    country: str | None
    region: str | None
    postcode: str | None
    timezone: str | None
    language: str | None
    product_line: str | None
    value: Decimal | None  # to the cent
    currency: str | None
    expected_close_date: date | None
    source: str
    utm: dict[str, str]
    custom_fields: dict[str, Any]
    status: LeadStatus
    disqualify_reason: str | None
    owner_id: str | None
    team_id: str | None
    score: int
    score_breakdown: list[dict[str, Any]]
    enrichment: dict[str, Any]
    enrichment_status: str
    form_id: str | None
    import_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    erased_at: datetime | None

    def as_api_dict(self) -> dict[str, Any]:
        """The lead in its API shape: money as a string to the cent, dates and instants as ISO strings."""
        return {
            "id": self.id, "contact": self.contact.as_api_dict(), "company": self.company.as_api_dict(),
            "country": self.country, "region": self.region, "postcode": self.postcode,
            "timezone": self.timezone, "language": self.language, "product_line": self.product_line,
            "value": None if self.value is None else str(self.value), "currency": self.currency,
            "expected_close_date": None if self.expected_close_date is None
            else self.expected_close_date.isoformat(),
            "source": self.source, "utm": self.utm, "custom_fields": self.custom_fields,
            "status": self.status, "disqualify_reason": self.disqualify_reason,
            "owner_id": self.owner_id, "team_id": self.team_id,
            "score": self.score, "score_breakdown": self.score_breakdown,
            "enrichment": self.enrichment, "enrichment_status": self.enrichment_status,
            "form_id": self.form_id, "import_id": self.import_id,
            "version": self.version,
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
            "erased_at": iso(self.erased_at),
        }

    def value_at(self, path: str) -> Any:
        """The value at a field path as scoring rules name it (`country`, `contact.title`, `utm.source`,
        `custom.<key>`); None when the lead has none."""
        head, _, tail = path.partition(".")
        if not tail:
            return getattr(self, head, None)
        part = getattr(self, {"custom": "custom_fields"}.get(head, head), None)
        if isinstance(part, dict):
            return part.get(tail)
        return getattr(part, tail, None) if isinstance(part, StoredContact | StoredCompany) else None


def to_cents(value: Decimal | str | int | float) -> Decimal:
    return Decimal(value).quantize(CENTS)
