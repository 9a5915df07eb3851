"""The event catalogue of docs/architecture.md as versioned Pydantic models.

Each event type has a data model per version; `EVENT_CATALOGUE[(type, version)]` finds it. Producers build
events with `make_event(SomeEventV1(...), ...)`, which validates the data; consumers call
`parse_data(envelope)` to get the typed model back. Consumers ignore fields they do not know, so a producer
may add optional fields within a version; removing or retyping a field needs a new version.
Money travels as a decimal string plus an ISO 4217 currency; times are UTC.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .envelope import Envelope, build_envelope


class EventData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1
    producer: ClassVar[str]
    description: ClassVar[str]


Money = Decimal  # serialised as a string by pydantic's JSON mode


# ---------------------------------------------------------------- lead-service
class ContactData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    contact_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    title: str | None = None


class CompanyData(BaseModel):
    model_config = ConfigDict(extra="ignore")
    company_id: str | None = None
    name: str | None = None
    domain: str | None = None
    size: str | None = None
    industry: str | None = None


LeadStatus = Literal["open", "qualified", "disqualified", "nurturing", "won", "lost"]


class LeadSnapshot(BaseModel):
    """What other services may know of a lead: its state right after the change."""

    model_config = ConfigDict(extra="ignore")
    lead_id: str
    contact: ContactData = Field(default_factory=ContactData)
    company: CompanyData = Field(default_factory=CompanyData)
    country: str | None = None
    region: str | None = None
    postcode: str | None = None
    timezone: str | None = None
    language: str | None = None
    product_line: str | None = None
    value: Money | None = None
    currency: str | None = None
    expected_close_date: date | None = None
    source: str | None = None
    utm: dict[str, str] = Field(default_factory=dict)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    status: LeadStatus = "open"
    owner_id: str | None = None
    team_id: str | None = None
    score: int | None = None
    form_id: str | None = None
    created_at: datetime | None = None


class LeadCreatedV1(EventData):
    event_type = "LeadCreated"
    producer = "lead-service"
    description = "A lead was accepted (web form, import or API)."
    lead: LeadSnapshot


class LeadUpdatedV1(EventData):
    event_type = "LeadUpdated"
    producer = "lead-service"
    description = "A lead's fields changed; `changed` names them (e.g. 'value', 'contact.email', 'score')."
    lead: LeadSnapshot
    changed: list[str] = Field(default_factory=list)
    # edit, form_resubmitted, enrichment, import, rescoring, pipeline, assignment (a reassignment only: a first
    # owner is told by LeadAssigned alone)
    cause: str | None = None


class LeadDisqualifiedV1(EventData):
    event_type = "LeadDisqualified"
    producer = "lead-service"
    description = "A lead was disqualified; it leaves its pipeline and sequences."
    lead_id: str
    reason: str
    owner_id: str | None = None


class LeadErasedV1(EventData):
    event_type = "LeadErased"
    producer = "lead-service"
    description = "A lead's personal data was removed; every service scrubs its copy."
    lead_id: str


ActivityKind = Literal["call", "email", "meeting", "demo", "proposal", "note"]


class ActivityLoggedV1(EventData):
    event_type = "ActivityLogged"
    producer = "lead-service"
    description = "A call, email, meeting, demo, proposal or note was logged against a lead."
    activity_id: str
    lead_id: str
    kind: ActivityKind
    rep_id: str | None = None
    occurred_at: datetime
    duration_seconds: int | None = None
    outcome: str | None = None
    subject: str | None = None
    source: str = "rep"  # rep, form, sequence


# ---------------------------------------------------------------- assignment-service
class LeadRoutedV1(EventData):
    event_type = "LeadRouted"
    producer = "assignment-service"
    description = "The pipeline for a lead was chosen, with the rule and the reason."
    lead_id: str
    pipeline_id: str
    rule_id: str | None = None
    rule_set_version: int | None = None
    territory_id: str | None = None
    trigger: str = "lead_created"
    reason: str
    # The owner chosen by the same decision, when it chose one (its LeadAssigned follows): the pipeline's
    # first stage tasks are created for that owner at once, instead of for nobody and then reassigned.
    owner_id: str | None = None
    team_id: str | None = None
    owner_timezone: str | None = None


class LeadAssignedV1(EventData):
    event_type = "LeadAssigned"
    producer = "assignment-service"
    description = "The owner (rep or team) of a lead was chosen, with rule, candidates and reason."
    lead_id: str
    owner_id: str | None = None
    # The owner's name and address travel with the decision so notification-service can reach the rep
    # without reading assignment-service's directory.
    owner_name: str | None = None
    owner_email: str | None = None
    owner_timezone: str | None = None
    team_id: str | None = None
    previous_owner_id: str | None = None
    territory_id: str | None = None
    rule_id: str | None = None
    rule_set_version: int | None = None
    strategy: str | None = None
    candidates: list[str] = Field(default_factory=list)
    trigger: str = "lead_created"  # lead_created, stage_entry, lead_won, manual, bulk, lead_updated
    reason: str
    decision_id: str | None = None


class RepSnapshot(BaseModel):
    """What other services may know of a rep: the directory entry right after the change."""

    model_config = ConfigDict(extra="ignore")
    rep_id: str  # the rep's user id (JWT sub), the owner_id in other events
    name: str
    email: str
    active: bool = True
    team_ids: list[str] = Field(default_factory=list)
    timezone: str | None = None
    working_hours: dict[str, Any] = Field(default_factory=dict)
    language: str | None = None


class RepCreatedV1(EventData):
    event_type = "RepCreated"
    producer = "assignment-service"
    description = "A rep joined the org's directory (assignment-service owns the directory)."
    rep: RepSnapshot


class RepUpdatedV1(EventData):
    event_type = "RepUpdated"
    producer = "assignment-service"
    description = "A rep's directory entry changed (name, email, teams, time zone, working hours, active)."
    rep: RepSnapshot
    changed: list[str] = Field(default_factory=list)


class RepDeactivatedV1(EventData):
    event_type = "RepDeactivated"
    producer = "assignment-service"
    description = "A rep was deactivated: no new work is routed to them; their history stays."
    rep: RepSnapshot


# ---------------------------------------------------------------- pipeline-service
StageReason = Literal["entry", "goal_met", "manual", "reopened"]


class PipelineStageRef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    stage_id: str
    name: str


class PipelineDefinedV1(EventData):
    event_type = "PipelineDefined"
    producer = "pipeline-service"
    description = ("A pipeline's definition as it now is (created, its name or stages changed, or archived), so other "
                   "services can check what names its stages; subject_version is the pipeline's version.")
    pipeline_id: str
    name: str
    stages: list[PipelineStageRef]  # in order
    archived: bool = False


class StageAdvancedV1(EventData):
    event_type = "StageAdvanced"
    producer = "pipeline-service"
    description = "A lead entered a stage (from → to) by entry, goal met, manual move or reopening."
    lead_id: str
    pipeline_id: str
    from_stage_id: str | None = None
    from_stage_position: int | None = None  # added for incentive programs: an advance is a move to a higher one
    to_stage_id: str
    to_stage_name: str
    to_stage_position: int
    is_ask_stage: bool = False
    win_probability: Decimal | None = None
    reason: StageReason
    triggering_event_id: str | None = None
    moved_by: str | None = None
    note: str | None = None
    owner_id: str | None = None
    entered_at: datetime
    # Every stage of the pipeline in order (ids), so consumers know the pipeline's stages (e.g. to check rules).
    pipeline_stage_ids: list[str] | None = None


TaskType = Literal["call", "email", "meeting", "demo", "todo"]


class TaskCreatedV1(EventData):
    event_type = "TaskCreated"
    producer = "pipeline-service"
    description = "A stage task was created for a lead."
    task_id: str
    lead_id: str
    pipeline_id: str | None = None
    stage_id: str | None = None
    title: str
    task_type: TaskType = "todo"
    required: bool = False
    due_at: datetime | None = None
    assignee_id: str | None = None


class TaskCompletedV1(EventData):
    event_type = "TaskCompleted"
    producer = "pipeline-service"
    description = "A task was completed."
    task_id: str
    lead_id: str
    stage_id: str | None = None
    required: bool = False
    assignee_id: str | None = None
    completed_by: str | None = None
    completed_at: datetime


class TaskSkippedV1(EventData):
    event_type = "TaskSkipped"
    producer = "pipeline-service"
    description = "An open task was skipped because its stage's goal was met or the lead left the stage."
    task_id: str
    lead_id: str
    stage_id: str | None = None
    assignee_id: str | None = None
    reason: str


class TaskOverdueV1(EventData):
    event_type = "TaskOverdue"
    producer = "pipeline-service"
    description = "An open task passed its due time (emitted once per task)."
    task_id: str
    lead_id: str
    stage_id: str | None = None
    title: str | None = None
    required: bool = False
    assignee_id: str | None = None
    due_at: datetime


class TaskReassignedV1(EventData):
    event_type = "TaskReassigned"
    producer = "pipeline-service"
    description = ("An open task was given to another assignee: by hand (`manual`) or following the lead's new "
                   "owner (`owner_changed`). `assignee_id` is null for a team's task.")
    task_id: str
    lead_id: str
    stage_id: str | None = None
    title: str | None = None
    required: bool = False
    due_at: datetime | None = None
    previous_assignee_id: str | None = None
    assignee_id: str | None = None
    team_id: str | None = None
    reason: Literal["manual", "owner_changed"]
    reassigned_by: str | None = None  # the user, for a manual reassignment


class LeadWonV1(EventData):
    event_type = "LeadWon"
    producer = "pipeline-service"
    description = "A lead was won; the customer is handed over to account management."
    lead_id: str
    pipeline_id: str
    stage_id: str | None = None
    value: Money | None = None
    currency: str | None = None
    owner_id: str | None = None
    won_at: datetime
    notes: str | None = None  # the closer's notes on the deal, for the customer hand-over


class LeadLostV1(EventData):
    event_type = "LeadLost"
    producer = "pipeline-service"
    description = "A lead was lost; it goes to nurturing until its re-engage date."
    lead_id: str
    pipeline_id: str
    stage_id: str | None = None
    reason: str
    owner_id: str | None = None
    lost_at: datetime
    reengage_at: datetime | None = None


class LeadReopenedV1(EventData):
    event_type = "LeadReopened"
    producer = "pipeline-service"
    description = "A lost (nurtured) lead re-entered its pipeline."
    lead_id: str
    pipeline_id: str
    reopened_at: datetime


# ---------------------------------------------------------------- notification-service
class EmailSentV1(EventData):
    event_type = "EmailSent"
    producer = "notification-service"
    description = "An email was accepted by the SMTP relay."
    delivery_id: str
    lead_id: str | None = None
    recipient_kind: Literal["prospect", "rep"] = "prospect"
    rep_id: str | None = None
    template_id: str | None = None
    sequence_id: str | None = None
    step: int | None = None
    message_id: str
    sent_at: datetime


class EmailFailedV1(EventData):
    event_type = "EmailFailed"
    producer = "notification-service"
    description = "An email could not be rendered or sent."
    delivery_id: str
    lead_id: str | None = None
    recipient_kind: Literal["prospect", "rep"] = "prospect"
    template_id: str | None = None
    sequence_id: str | None = None
    step: int | None = None
    error: str
    permanent: bool = True


class ContactSyncedV1(EventData):
    event_type = "ContactSynced"
    producer = "notification-service"
    description = "A lead's contact was synced to a Mailchimp list."
    delivery_id: str
    lead_id: str
    list_id: str
    action: Literal["subscribed", "unsubscribed", "archived", "tagged"]
    tags: list[str] = Field(default_factory=list)
    outcome: Literal["ok", "failed"] = "ok"
    error: str | None = None


class RepNotifiedV1(EventData):
    event_type = "RepNotified"
    producer = "notification-service"
    description = "A rep was told of something: assignment, task due/overdue, milestone."
    delivery_id: str
    rep_id: str
    lead_id: str | None = None
    reason: str  # lead_assigned, task_assigned, task_due, task_overdue, milestone
    milestone_rule_id: str | None = None
    channel: Literal["email", "webhook"] = "email"


# ---------------------------------------------------------------- metrics-service
class ForecastSnapshottedV1(EventData):
    event_type = "ForecastSnapshotted"
    producer = "metrics-service"
    description = "A forecast was frozen at a period's start, for accuracy later."
    snapshot_id: str
    period: Literal["month", "quarter", "year"]
    period_start: datetime
    period_end: datetime
    scope: Literal["org", "team", "rep"]
    scope_id: str | None = None
    currency: str | None = None
    won_so_far: Money
    weighted_by_stage: Money
    weighted_by_history: Money
    best_case: Money


class QuotaReachedV1(EventData):
    event_type = "QuotaReached"
    producer = "metrics-service"
    description = ("A rep's or team's quota for a period was reached: value won in the period >= the quota "
                   "(the quota-attainment report's definition). Emitted once per quota.")
    quota_id: str
    scope: Literal["rep", "team"]
    scope_id: str
    period: Literal["month", "quarter", "year"]
    period_start: date
    amount: Money
    currency: str
    attained: Money  # value won in the period by the rep (lead owner) or team when it was found reached
    attainment_pct: float  # attained / amount × 100, rounded to 2 places
    reached_at: datetime  # when metrics-service found the quota reached


class QuotaSetV1(EventData):
    event_type = "QuotaSet"
    producer = "metrics-service"
    description = ("A rep's or team's quota for a period was created or changed (the newest version wins; "
                   "`version` increases per quota).")
    quota_id: str
    scope: Literal["rep", "team"]
    scope_id: str
    period: Literal["month", "quarter", "year"]
    period_start: date
    period_end: date  # exclusive
    amount: Money
    currency: str
    version: int = 1


class QuotaRemovedV1(EventData):
    event_type = "QuotaRemoved"
    producer = "metrics-service"
    description = "A quota was deleted."
    quota_id: str


class ReportingCurrencySetV1(EventData):
    event_type = "ReportingCurrencySet"
    producer = "metrics-service"
    description = "An org's reporting currency (ISO 4217) was set: every report's money figures are in it."
    currency: str


class ExchangeRateSetV1(EventData):
    event_type = "ExchangeRateSet"
    producer = "metrics-service"
    description = ("A dated exchange rate was set by an admin: 1 `base_currency` = `rate` `quote_currency`, in "
                   "force from `valid_from` until the next rate of the same pair.")
    base_currency: str
    quote_currency: str
    rate: Decimal
    valid_from: date


# ---------------------------------------------------------------- incentive-service
class StatementFigures(BaseModel):
    """What every statement event carries: which statement, whose, which period and version, how much."""

    model_config = ConfigDict(extra="ignore")
    statement_id: str
    participant_id: str  # the rep's user id (JWT sub), as owner_id elsewhere
    period_start: date
    period_end: date  # exclusive
    version: int
    total: Money  # sum of the statement's lines, in `plan_currency`
    plan_currency: str
    payout: Money  # what the participant is paid, in `payout_currency` (their own)
    payout_currency: str


class StatementComputedV1(EventData):
    event_type = "StatementComputed"
    producer = "incentive-service"
    description = ("A commission statement was computed or recomputed: a new statement, a changed draft, or a new "
                   "version of a reviewed/approved one (`reason` says what caused it).")
    statement: StatementFigures
    reason: str  # credit_changed, plan_changed, quota_changed, rate_changed, adjustment, recalculation
    computed_at: datetime


class StatementApprovedV1(EventData):
    event_type = "StatementApproved"
    producer = "incentive-service"
    description = "A manager or admin approved a statement; from now on its participant sees it."
    statement: StatementFigures
    approved_by: str
    approved_at: datetime


class StatementLockedV1(EventData):
    event_type = "StatementLocked"
    producer = "incentive-service"
    description = "A statement was locked for payroll: immutable; later corrections land on the next one."
    statement: StatementFigures
    locked_by: str
    locked_at: datetime


class StatementPaidV1(EventData):
    event_type = "StatementPaid"
    producer = "incentive-service"
    description = "A locked statement was marked paid (its payout left payroll)."
    statement: StatementFigures
    paid_by: str
    paid_at: datetime
    payment_reference: str | None = None


class DisputeOpenedV1(EventData):
    event_type = "DisputeOpened"
    producer = "incentive-service"
    description = "A participant disputed a line of their statement, with a comment."
    dispute_id: str
    statement_id: str
    line_id: str
    participant_id: str
    opened_by: str
    comment: str
    opened_at: datetime


class DisputeResolvedV1(EventData):
    event_type = "DisputeResolved"
    producer = "incentive-service"
    description = ("A manager resolved a dispute: `accepted` (an adjustment of `adjustment_amount` lands on the "
                   "statement) or `rejected` (with the reason).")
    dispute_id: str
    statement_id: str
    line_id: str
    participant_id: str
    outcome: Literal["accepted", "rejected"]
    resolution: str
    adjustment_amount: Money | None = None
    adjustment_currency: str | None = None
    resolved_by: str
    resolved_at: datetime
    seconds_to_resolve: float


# ---------------------------------------------------------------- incentive-service: programs (contests)
class ProgramStartedV1(EventData):
    event_type = "ProgramStarted"
    producer = "incentive-service"
    description = ("An incentive program (contest) started: its participants earn points from now on by the rules "
                   "summarised in `rules_summary`. Not published for a hidden (test mode) program.")
    program_id: str
    program_name: str
    format: Literal["race", "leaderboard", "milestones", "head_to_head", "team"]
    starts_at: datetime
    ends_at: datetime
    participants: list[str]  # rep ids (user ids, as owner_id elsewhere)
    target: int | None = None  # a race's points to reach
    rules_summary: str


class ProgramRulesChangedV1(EventData):
    event_type = "ProgramRulesChanged"
    producer = "incentive-service"
    description = ("A running program's scoring rules changed: the rules are frozen once started, so the change is "
                   "a new rule version that scores only what happens from `effective_from` on.")
    program_id: str
    program_name: str
    rule_version: int
    effective_from: datetime
    participants: list[str]
    rules_summary: str


class ProgramMilestoneReachedV1(EventData):
    event_type = "ProgramMilestoneReached"
    producer = "incentive-service"
    description = ("A participant reached a program milestone (once per participant and milestone), with the reward "
                   "it earns (a badge and/or cash: a SPIFF line on the commission statement) and what comes next.")
    program_id: str
    program_name: str
    rep_id: str
    milestone_id: str
    milestone_name: str
    milestone_points: int
    points: int  # the participant's points when it was recorded
    reached_at: datetime
    next_milestone: str | None = None
    badge: str | None = None
    cash: Money | None = None
    currency: str | None = None
    earned_by: str | None = None  # the fact (activity:<id>, won:<event id>, ...) that crossed it


class BadgeEarnedV1(EventData):
    event_type = "BadgeEarned"
    producer = "incentive-service"
    description = "A participant earned a program badge (a streak or a count), once, with the fact that earned it."
    program_id: str
    program_name: str
    rep_id: str
    badge_id: str
    badge_name: str
    earned_at: datetime
    earned_by: str


class ProgramWonV1(EventData):
    event_type = "ProgramWon"
    producer = "incentive-service"
    description = ("A program finished and this participant holds a rewarded place (in a team contest: each member "
                   "of the team); cash lands on their commission statement as a SPIFF line.")
    program_id: str
    program_name: str
    rep_id: str
    place: int
    points: int
    team_id: str | None = None
    badge: str | None = None
    cash: Money | None = None
    currency: str | None = None
    ended_at: datetime



class BusinessCalendarSetV1(EventData):
    event_type = "BusinessCalendarSet"
    producer = "pipeline-service"
    description = ("An org's business calendar was set: its working weekdays ('monday'...), the country (ISO 3166-1 "
                   "alpha-2) and subdivision whose public holidays are days off, and its own days off. Business "
                   "days and hours (task due dates, sequence sending windows) count only working days.")
    working_days: list[str]
    country: str | None = None
    subdivision: str | None = None
    days_off: list[date] = Field(default_factory=list)

ALL_EVENT_MODELS: tuple[type[EventData], ...] = (
    LeadCreatedV1, LeadUpdatedV1, LeadDisqualifiedV1, LeadErasedV1, ActivityLoggedV1,
    LeadRoutedV1, LeadAssignedV1, RepCreatedV1, RepUpdatedV1, RepDeactivatedV1,
    PipelineDefinedV1, StageAdvancedV1, TaskCreatedV1, TaskCompletedV1, TaskSkippedV1, TaskOverdueV1, TaskReassignedV1,
    LeadWonV1, LeadLostV1, LeadReopenedV1,
    EmailSentV1, EmailFailedV1, ContactSyncedV1, RepNotifiedV1,
    ForecastSnapshottedV1, QuotaReachedV1, QuotaSetV1, QuotaRemovedV1, ReportingCurrencySetV1,
    ExchangeRateSetV1, BusinessCalendarSetV1,
    StatementComputedV1, StatementApprovedV1, StatementLockedV1, StatementPaidV1, DisputeOpenedV1,
    DisputeResolvedV1,
    ProgramStartedV1, ProgramRulesChangedV1, ProgramMilestoneReachedV1, BadgeEarnedV1, ProgramWonV1,
)
EVENT_CATALOGUE: dict[tuple[str, int], type[EventData]] = {
    (m.event_type, m.event_version): m for m in ALL_EVENT_MODELS
}
EVENT_TYPES: tuple[str, ...] = tuple(dict.fromkeys(m.event_type for m in ALL_EVENT_MODELS))


class UnknownEventType(ValueError):
    pass


def make_event(data: EventData, *, org_id: str, subject_id: str, subject_version: int = 1,
               occurred_at: datetime | None = None, producer: str | None = None) -> Envelope:
    return build_envelope(
        data.event_type, data.model_dump(mode="json"), org_id=org_id, producer=producer or data.producer,
        subject_id=subject_id, subject_version=subject_version, version=data.event_version,
        occurred_at=occurred_at,
    )


def parse_data(envelope: Envelope) -> EventData:
    model = EVENT_CATALOGUE.get((envelope.type, envelope.version))
    if model is None:
        raise UnknownEventType(f"{envelope.type} v{envelope.version}")
    return model.model_validate(envelope.data)
