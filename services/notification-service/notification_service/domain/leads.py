"""What notification-service knows of a lead: its copy, kept from lead-service's and pipeline-service's events
(service_layer/projections.py keeps it; a row of `leads`). Until LeadCreated arrives only what other events said
is known (`lead_version` 0)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class KnownLead:
    org_id: str
    lead_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    phone: str | None = None
    country: str | None = None
    timezone: str | None = None
    language: str | None = None
    product_line: str | None = None
    value: Decimal | None = None
    currency: str | None = None
    source: str | None = None
    form_id: str | None = None
    custom_fields: dict[str, Any] | None = None
    status: str | None = None  # lead-service's
    owner_id: str | None = None
    lead_version: int = 0  # of lead-service's events
    pipeline_id: str | None = None
    stage_id: str | None = None
    stage_name: str | None = None
    outcome: str | None = None  # won, lost (pipeline-service), None while open
    won_value: Decimal | None = None  # LeadWon's value, currency and notes (the customer hand-over)
    won_currency: str | None = None
    won_notes: str | None = None
    entered_stages: list[list[str]] | None = field(default=None)  # [[pipeline_id, stage_id], ...]
    reopened: bool = False
    pipeline_version: int = 0  # of pipeline-service's events
    unsubscribed: bool = False
    erased: bool = False
    updated_at: datetime | None = None
    lock_version: int = 0  # how many transactions locked the row (adapters/repository.py)
