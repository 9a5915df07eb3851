"""What a lead is made of, validated: the one input model used by the API, web forms and CSV import.

Plain Pydantic validation, no framework and no I/O. Field paths (`contact.email`, `company.name`, `utm.source`,
`custom.<key>`) are what form mappings and CSV headers name.
"""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from salesflow_shared.currency import iso_currency

LeadStatus = Literal["open", "qualified", "disqualified", "nurturing", "won", "lost"]
OPEN_STATUSES = ("open", "qualified", "nurturing")
SOURCES = ("web_form", "import", "api", "referral", "cold_call", "event", "partner", "inbound_call",
           "email", "social", "advertising", "other")
UTM_KEYS = ("source", "medium", "campaign", "term", "content")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
# The fields of a lead's contact and company, in the lead's API shape and in their tables alike.
CONTACT_FIELDS = ("first_name", "last_name", "email", "phone", "title")
COMPANY_FIELDS = ("name", "domain", "size", "industry")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class _Part(_Strict):
    """A lead's contact or company: a blank string is a value not given."""

    _blank = field_validator("*", mode="before")(_blank_to_none)


def _email_address(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not EMAIL_RE.match(value):
        raise ValueError("not an email address")
    return value


def _domain_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower().removeprefix("http://").removeprefix("https://").removeprefix("www.")
    value = value.split("/")[0]
    if "." not in value or " " in value:
        raise ValueError("not a domain name")
    return value


class ContactIn(_Part):
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=50)
    title: str | None = Field(None, max_length=200)

    _email = field_validator("email")(_email_address)


class CompanyIn(_Part):
    name: str | None = Field(None, max_length=200)
    domain: str | None = Field(None, max_length=253)
    size: str | None = Field(None, max_length=50)
    industry: str | None = Field(None, max_length=100)

    _domain = field_validator("domain")(_domain_name)


class LeadIn(_Strict):
    """A lead as submitted (create) — every field optional except that someone must be reachable."""

    contact: ContactIn = Field(default_factory=ContactIn)
    company: CompanyIn = Field(default_factory=CompanyIn)
    country: str | None = Field(None, description="ISO 3166-1 alpha-2")
    region: str | None = Field(None, max_length=100)
    postcode: str | None = Field(None, max_length=20)
    timezone: str | None = Field(None, max_length=64)
    language: str | None = Field(None, max_length=16)
    product_line: str | None = Field(None, max_length=100)
    value: Decimal | None = Field(None, ge=0, max_digits=16, decimal_places=2)
    currency: str | None = None
    expected_close_date: date | None = None
    source: str = Field("api", max_length=50, json_schema_extra={"enum": list(SOURCES)})
    utm: dict[str, str] = Field(default_factory=dict)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    owner_id: str | None = Field(None, max_length=100)
    team_id: str | None = Field(None, max_length=100)

    _blank = field_validator("country", "region", "postcode", "timezone", "language", "product_line",
                             "currency", "value", "expected_close_date", "owner_id", "team_id",
                             mode="before")(_blank_to_none)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        if not COUNTRY_RE.match(value):
            raise ValueError("must be an ISO 3166-1 alpha-2 code such as 'DE'")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return iso_currency(value)  # the real ISO 4217 list, not just three letters

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in SOURCES:
            raise ValueError(f"must be one of {', '.join(SOURCES)}")
        return value

    @field_validator("utm")
    @classmethod
    def _utm(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:  # a PATCH may send null: "no change"
            return None
        unknown = [k for k in value if k not in UTM_KEYS]
        if unknown:
            raise ValueError(f"unknown UTM key {unknown[0]!r}; one of {', '.join(UTM_KEYS)}")
        return {k: v[:200] for k, v in value.items() if v}

    @model_validator(mode="after")
    def _reachable_and_priced(self) -> LeadIn:
        c = self.contact
        if not (c.email or c.phone or c.first_name or c.last_name):
            raise ValueError("a lead needs a contact: at least an email, a phone or a name")
        if self.value is not None and self.currency is None:
            raise ValueError("currency is required with value")
        return self


class ContactPatch(ContactIn):
    """PATCH of a lead's contact: the same fields and checks, only those sent change."""


class CompanyPatch(CompanyIn):
    """PATCH of a lead's company: the same fields and checks, only those sent change."""


class LeadPatch(_Strict):
    """PATCH body: only the fields sent change (null clears where that makes sense)."""

    contact: ContactPatch | None = None
    company: CompanyPatch | None = None
    country: str | None = None
    region: str | None = Field(None, max_length=100)
    postcode: str | None = Field(None, max_length=20)
    timezone: str | None = Field(None, max_length=64)
    language: str | None = Field(None, max_length=16)
    product_line: str | None = Field(None, max_length=100)
    value: Decimal | None = Field(None, ge=0, max_digits=16, decimal_places=2)
    currency: str | None = None
    expected_close_date: date | None = None
    source: str | None = None
    utm: dict[str, str] | None = None
    custom_fields: dict[str, Any] | None = None
    status: Literal["open", "qualified", "nurturing"] | None = None
    owner_id: str | None = Field(None, max_length=100)
    team_id: str | None = Field(None, max_length=100)

    # attr-defined: pydantic keeps LeadIn's validators as classmethods; their functions are reused here
    _country = field_validator("country")(LeadIn._country.__func__)  # type: ignore[attr-defined]
    _currency = field_validator("currency")(LeadIn._currency.__func__)  # type: ignore[attr-defined]
    _utm = field_validator("utm")(LeadIn._utm.__func__)  # type: ignore[attr-defined]

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return None if value is None else LeadIn._source.__func__(cls, value)  # type: ignore[attr-defined]  # as above


# ------------------------------------------------------------------ flat field paths (mapping targets)
SCALAR_TARGETS = (
    "contact.first_name", "contact.last_name", "contact.email", "contact.phone", "contact.title",
    "company.name", "company.domain", "company.size", "company.industry",
    "country", "region", "postcode", "timezone", "language", "product_line", "value", "currency",
    "expected_close_date", "source", "owner_id", "team_id",
)
SPECIAL_TARGETS = ("contact.full_name",)


def is_valid_target(path: str) -> bool:
    if path in SCALAR_TARGETS or path in SPECIAL_TARGETS:
        return True
    head, _, tail = path.partition(".")
    if head == "utm":
        return tail in UTM_KEYS
    if head == "custom":
        return bool(re.fullmatch(r"[a-z][a-z0-9_]{0,62}", tail))
    return False


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Put `value` at a flat path into the nested LeadIn-shaped dict."""
    if path == "contact.full_name":
        first, _, last = str(value).strip().partition(" ")
        contact = target.setdefault("contact", {})
        contact.setdefault("first_name", first or None)
        if last.strip():
            contact.setdefault("last_name", last.strip())
        return
    head, _, tail = path.partition(".")
    if not tail:
        target[head] = value
        return
    key = {"custom": "custom_fields"}.get(head, head)
    target.setdefault(key, {})[tail] = value


def error_field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("__root__",)]
    if parts and parts[0] == "custom_fields":
        parts[0] = "custom"
    return ".".join(parts) or "lead"


def search_text(first: str | None, last: str | None, email: str | None, company: str | None) -> str:
    return " ".join(p.lower() for p in (first, last, email, company) if p)
