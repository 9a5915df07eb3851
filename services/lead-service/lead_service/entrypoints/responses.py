"""What lead-service answers, as models for the OpenAPI document (routes build the JSON; contract tests check it).

Times are RFC 3339 with an offset; money is a decimal string; ids of other things are `<thing>_id`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, Field, create_model

from salesflow_shared.contract import MONEY_PATTERN, page_of
from salesflow_shared.events import LeadSnapshot

from ..domain import scoring
from ..domain.activity import Activity
from ..domain.forms import Form
from ..domain.lead import LeadStatus
from ..domain.stored_lead import StoredCompany, StoredContact, StoredLead


def _fields_of(record: type) -> dict[str, Any]:
    """A required model field for each field of the stored record, with its type."""
    return {name: (hint, ...) for name, hint in get_type_hints(record).items()}


LeadContact = create_model("LeadContact", __module__=__name__, **_fields_of(StoredContact))
LeadCompany = create_model("LeadCompany", __module__=__name__, **_fields_of(StoredCompany))


ScoreLine = create_model("ScoreLine", __module__=__name__, **_fields_of(scoring.ScoreLine))


# A lead answers with the stored record's fields, in its API shape: these fields have their API types (money as
# a string to the cent, the typed contact, company and score lines); every other field is the record's own.
_API_TYPES: dict[str, Any] = {
    "contact": LeadContact, "company": LeadCompany,
    "value": (str | None, Field(json_schema_extra={"pattern": MONEY_PATTERN})),
    "score": int | None, "score_breakdown": list[ScoreLine], "enrichment_status": str | None,
}
LeadOut = create_model(
    "LeadOut", __module__=__name__,
    __doc__="A lead with its contact, company, score breakdown and enrichment; `version` is its ETag.",
    **{**_fields_of(StoredLead), **_API_TYPES})


class LeadPreview(BaseModel):
    """The lead as intake would create it (nothing stored: no ids yet) and the snapshot its LeadCreated would
    carry (pass it as `lead` to assignment-service's POST /v1/routing/simulate)."""

    lead: LeadOut
    snapshot: LeadSnapshot


class EnrichmentRetried(BaseModel):
    queued: int = Field(description="how many leads were queued for enrichment again")


class ErasedLeads(BaseModel):
    erased_lead_ids: list[str]


class ContactOut(BaseModel):
    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    title: str | None
    company_id: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class CompanyOut(BaseModel):
    id: str
    name: str | None
    domain: str | None
    size: str | None
    industry: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class ActivityOut(Activity):
    pass


class ScoringRuleOut(BaseModel):
    id: str
    name: str
    points: int
    enabled: bool
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int


class RescoreResult(BaseModel):
    rescored: int
    changed: int


class CustomFieldOut(BaseModel):
    key: str
    label: str | None
    type: Literal["string", "number", "boolean", "date", "choice"]
    options: list[str]
    required: bool
    created_at: datetime


class FormOut(Form):
    """A web form; `signing_secret` signs webhook submissions (Salesflow-Signature)."""

    submit_url: str


class FieldProblem(BaseModel):
    field: str
    message: str


class SubmissionResult(BaseModel):
    """What became of a submission: accepted (a lead was created or updated), failed (see errors) or received."""

    submission_id: str
    status: str
    errors: list[FieldProblem] = []
    lead_id: str | None = None
    outcome: Literal["created", "updated"] | None = None


class SubmissionOut(BaseModel):
    id: str
    form_id: str
    status: str
    channel: str
    received_at: datetime
    processed_at: datetime | None
    errors: list[FieldProblem]
    lead_id: str | None
    outcome: str | None
    attempts: int
    content_type: str | None
    raw_body: str | None
    dedup_key: str | None


class ReprocessResult(BaseModel):
    reprocessed: int
    accepted: int
    failed: int
    items: list[SubmissionResult]


class ImportQueued(BaseModel):
    id: str
    status: str
    total_rows: int
    progress_url: str


class ImportOut(BaseModel):
    id: str
    status: str
    filename: str | None
    form_id: str | None
    total_rows: int | None
    processed_rows: int | None
    created: int | None
    updated: int | None
    failed: int | None
    mapping: dict[str, Any]
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ImportRowError(BaseModel):
    row: int
    errors: list[FieldProblem]
    data: dict[str, Any]


class TimelineEntry(BaseModel):
    """One thing that happened to the lead, told by the event that says so."""

    event_id: str
    event_type: str
    kind: Literal["created", "scored", "updated", "disqualified", "routed", "assigned", "stage_entered",
                  "stage_exited", "task_created", "task_completed", "task_skipped", "email_sent", "email_failed",
                  "mailchimp", "won", "lost", "reopened"]
    occurred_at: datetime
    correlation_id: str | None = Field(description="the X-Correlation-ID of the request that caused it")
    producer: str
    summary: str
    details: dict[str, Any] = Field(description="by kind: rule_id and reason (routed), owner_id and reason "
                                                "(assigned), stage_id and stage_name (stage_*), task_id, ...")


class LeadTimeline(BaseModel):
    """Where the lead stands now (owner, pipeline, stage) and its story, oldest first (cursor pagination)."""

    lead_id: str
    status: LeadStatus
    owner_id: str | None
    team_id: str | None
    pipeline_id: str | None
    stage_id: str | None
    stage_name: str | None
    items: list[TimelineEntry]
    next_cursor: str | None


LeadPage = page_of(LeadOut)
ContactPage = page_of(ContactOut)
CompanyPage = page_of(CompanyOut)
ActivityPage = page_of(ActivityOut)
ScoringRulePage = page_of(ScoringRuleOut)
CustomFieldPage = page_of(CustomFieldOut)
FormPage = page_of(FormOut)
SubmissionPage = page_of(SubmissionOut)
ImportPage = page_of(ImportOut)
ImportRowErrorPage = page_of(ImportRowError)
