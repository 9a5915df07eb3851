"""What notification-service answers, as models for the OpenAPI document (routes build the JSON; contract tests
check it). Times are RFC 3339 with an offset; money is a decimal string."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from salesflow_shared.contract import MONEY_PATTERN, page_of, record_fields

from ..adapters.repository import Delivery


class TemplateOut(BaseModel):
    """An email template; `version` is its ETag."""

    id: str
    org_id: str
    name: str
    key: str | None
    audience: Literal["prospect", "rep"]
    subject: str
    html_body: str
    text_body: str
    version: int
    created_at: datetime
    updated_at: datetime


class SequenceStep(BaseModel):
    template_id: str
    delay_minutes: float
    business_hours: bool


class SequenceOut(BaseModel):
    id: str
    org_id: str
    name: str
    trigger: Literal["stage_entry", "lead_created", "lead_lost", "lead_won"]
    pipeline_id: str | None
    stage_id: str | None
    source: str | None
    steps: list[SequenceStep]
    business_timezone: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class EnrollmentOut(BaseModel):
    """A lead in a sequence: at which step, when the next is due, or why it stopped."""

    id: str
    org_id: str
    sequence_id: str
    lead_id: str
    trigger_key: str
    stage_id: str | None
    status: str
    stop_reason: str | None
    next_step: int
    next_due_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Unsubscribed(BaseModel):
    unsubscribed: bool


class MailchimpSettingsOut(BaseModel):
    """The org's Mailchimp settings; the API key is shown only by its last characters."""

    org_id: str
    nurture_list_id: str | None
    nurture_tag: str | None
    updated_at: datetime
    api_key_hint: str


class MailchimpRuleOut(BaseModel):
    id: str
    org_id: str
    trigger: Literal["stage_entry", "stage_exit", "won", "lost", "disqualified", "reopened"]
    pipeline_id: str | None
    stage_id: str | None = Field(description="the stage of a stage_entry or stage_exit rule; null for an outcome")
    action: Literal["subscribe", "unsubscribe"]
    list_id: str
    tags: list[str]
    merge_fields: dict[str, str]
    status_if_new: str
    created_at: datetime


class MilestoneRuleOut(BaseModel):
    id: str
    org_id: str
    name: str
    kind: str
    stage_id: str | None
    min_value: str | None = Field(json_schema_extra={"pattern": MONEY_PATTERN})
    currency: str | None
    channels: list[str]
    active: bool
    created_at: datetime


class WebhookSubscriptionCreated(BaseModel):
    """A webhook subscription as created: the signing secret is shown this once."""

    id: str
    org_id: str
    url: str
    reasons: list[str]
    rep_id: str | None
    secret: str
    active: bool
    created_at: datetime


class WebhookSubscriptionOut(BaseModel):
    id: str
    org_id: str
    url: str
    reasons: list[str]
    rep_id: str | None
    active: bool
    created_at: datetime


# The delivery log answers the record's columns but its payload (the message itself) and idempotency key.
class DeliveryOut(record_fields(Delivery, omit=("idem_key", "payload"))):  # type: ignore[misc]
    """One email, Mailchimp change or webhook: to whom, why, and the outcome."""


TemplatePage = page_of(TemplateOut)
SequencePage = page_of(SequenceOut)
EnrollmentPage = page_of(EnrollmentOut)
MailchimpRulePage = page_of(MailchimpRuleOut)
MilestoneRulePage = page_of(MilestoneRuleOut)
WebhookSubscriptionPage = page_of(WebhookSubscriptionOut)
DeliveryPage = page_of(DeliveryOut)

UNSUBSCRIBE_PAGE: dict[str, Any] = {"type": "string", "description": "an HTML page"}
