"""What incentive-service answers, as models for the OpenAPI document (routes build the JSON; contract tests
check it).

Money is a decimal string in the currency named beside it; times are RFC 3339 with their offset, days ISO dates.
Plan documents, statement summaries and audit snapshots are JSON objects whose shape is the plan language's
(see the service README), so they are documented as objects.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from salesflow_shared.clock import UtcDateTime
from salesflow_shared.contract import MONEY_PATTERN, page_of, record_fields

from ..adapters.repository.disputes import DisputeRow
from ..adapters.repository.sources import StatementRow

CURRENCY = r"^[A-Z]{3}$"


def money(description: str = "decimal string") -> Any:
    return Field(pattern=MONEY_PATTERN, description=description)


# ------------------------------------------------------------------ payees
class PayeeOut(BaseModel):
    """A participant: the rep directory's copy plus the currency they are paid in."""

    participant_id: str
    name: str | None
    email: str | None
    team_ids: list[str]
    active: bool | None
    currency: str | None = Field(pattern=CURRENCY)
    role: str | None


# ------------------------------------------------------------------ plans
class PlanOut(BaseModel):
    """One version of a commission plan, in force from effective_from until the next version (effective_to)."""

    plan_id: str
    version: int
    name: str
    effective_from: date
    effective_to: date | None
    retired: bool
    created_by: str
    created_at: UtcDateTime
    document: dict[str, Any] = Field(description="the validated plan (rates, tiers, credit splits, cap, ...)")


# ------------------------------------------------------------------ statements
# A statement answers its row's columns but the org, the inputs' fingerprint and the recalculation counter.
class StatementOut(record_fields(StatementRow, omit=("org_id", "fingerprint", "revision"))):  # type: ignore[misc]
    """One version of a participant's commission statement for a period."""

    total: str = money("in plan_currency")
    payout: str = money("in payout_currency")
    summary: dict[str, Any] = Field(description="attainment, quota, tiers, cap, hurdle, draw balance, warnings")
    reason: str | None
    computed_at: UtcDateTime | None


class StatementLine(BaseModel):
    line_id: str
    seq: int
    kind: str
    key: str | None
    lead_id: str | None
    plan_id: str | None
    plan_version: int | None
    rule: str | None
    amount: str = money("in the statement's plan currency")
    description: str | None
    reason: str | None
    author: str | None


class DisputeOut(record_fields(DisputeRow, omit=("org_id",))):  # type: ignore[misc]
    """A rep's dispute of a statement line; seconds_to_resolve once resolved."""

    status: str = Field(description="open, accepted or rejected")
    seconds_to_resolve: float | None


class StatementDetail(StatementOut):
    """A statement with its lines and disputes."""

    lines: list[StatementLine]
    disputes: list[DisputeOut]
    open_disputes: int


class LineExplanation(StatementLine):
    """How a line's amount was calculated, step by step."""

    currency: str
    steps: list[str]


class StatementsComputed(BaseModel):
    on: date
    outcomes: dict[str, int] = Field(description="how many statements each outcome had (e.g. unchanged)")


class AdjustmentOut(BaseModel):
    """An adjustment line, on the period it landed on (the next open one when the statement is locked)."""

    adjustment_id: str
    participant_id: str
    period_start: date
    amount: str = money("in currency; negative takes back")
    currency: str
    reason: str
    author: str
    dispute_id: str | None


class WhatIfLine(BaseModel):
    kind: str
    rule: str | None
    amount: str = money()
    description: str | None
    steps: list[str]


class WhatIf(BaseModel):
    """What the participant would earn in the period if they won the deal (nothing is written)."""

    participant_id: str
    period_start: date
    period_end: date
    currency: str
    total_now: str = money()
    total_with_deal: str = money()
    earned: str = money()
    attainment_pct_now: str | None
    attainment_pct_with_deal: str | None
    deal_lines: list[WhatIfLine]
    warnings: list[str]


# ------------------------------------------------------------------ disputes
class DisputeList(BaseModel):
    """Disputes with how many were resolved and the median time it took."""

    items: list[DisputeOut]
    next_cursor: str | None
    resolved: int
    median_seconds_to_resolve: float | None


# ------------------------------------------------------------------ payouts
class PeriodMoved(BaseModel):
    period_start: date
    action: str
    statements: list[str] = Field(description="the ids of the statements moved")


class AuditEntry(BaseModel):
    at: UtcDateTime
    actor: str | None
    action: str
    entity: str
    entity_id: str
    before: Any = Field(description="the entity before (JSON), null when created")
    after: Any = Field(description="the entity after (JSON)")


# ------------------------------------------------------------------ credits
class RefundOut(BaseModel):
    refund_id: str
    lead_id: str
    refunded_at: UtcDateTime
    note: str | None


class DealOutcome(BaseModel):
    kind: str = Field(description="won, lost, reopened, refunded, ...")
    at: UtcDateTime
    value: str | None = Field(json_schema_extra={"pattern": MONEY_PATTERN})
    currency: str | None
    closer_id: str | None
    team_id: str | None
    recorded_by: str | None
    note: str | None


class CreditOut(BaseModel):
    lead_id: str
    outcomes: list[DealOutcome]


# ------------------------------------------------------------------ programs
class ScoringRuleJson(BaseModel):
    behaviour: str
    points: int
    min_duration_seconds: int | None
    outcomes: list[str]
    points_per_value_unit: int
    value_unit: str = Field(description="decimal string")


class RuleVersionOut(BaseModel):
    version: int
    effective_from: UtcDateTime
    rules: list[ScoringRuleJson]


class ProgramTeam(BaseModel):
    id: str
    name: str
    members: list[str]


class ProgramGuards(BaseModel):
    rep_logged_only: bool
    stage_revert_days: int
    sandbag_last_days: int


class RewardOut(BaseModel):
    badge: str | None
    cash: str | None = Field(json_schema_extra={"pattern": MONEY_PATTERN})
    currency: str | None


class MilestoneOut(BaseModel):
    id: str
    name: str
    points: int
    reward: RewardOut


class BadgeOut(BaseModel):
    id: str
    name: str
    kind: str
    behaviour: str
    count: int


class RoundOut(BaseModel):
    starts_at: UtcDateTime
    ends_at: UtcDateTime


class ProgramOut(BaseModel):
    """An incentive program with its rule versions; `version` is in its ETag."""

    id: str
    name: str
    format: str
    template: str | None
    status: str = Field(description="draft, running or ended")
    hidden: bool
    version: int
    starts_at: UtcDateTime
    ends_at: UtcDateTime
    rule_versions: list[RuleVersionOut]
    participants: list[str]
    teams: list[ProgramTeam]
    guards: ProgramGuards
    currency: str
    target: int | None
    milestones: list[MilestoneOut]
    place_rewards: list[RewardOut]
    badges: list[BadgeOut]
    rounds: list[RoundOut]
    team_scoring: str
    created_by: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    ended_at: UtcDateTime | None


class BoardMilestone(BaseModel):
    id: str
    name: str
    points: int


class BoardEntry(BaseModel):
    rank: int
    id: str = Field(description="the rep's or team's id")
    name: str
    points: int
    finished_at: UtcDateTime | None
    milestones: list[str]
    eliminated_in_round: int | None


class BoardMatch(BaseModel):
    round: int
    a: str
    b: str | None
    a_points: int
    b_points: int | None
    winner: str | None


class Leaderboard(BaseModel):
    """The live board of a program."""

    program_id: str
    name: str
    format: str
    status: str
    as_of: UtcDateTime
    target: int | None
    milestones: list[BoardMilestone]
    entries: list[BoardEntry]
    matches: list[BoardMatch]


class ProgramPosition(BaseModel):
    """A rep's (or their team's) place on the board and what it takes to move up."""

    program_id: str
    rep_id: str
    team_id: str | None
    rank: int
    of: int
    points: int
    own_points: int
    points_to_pass_next: int | None
    next_milestone: str | None
    points_to_next_milestone: int | None


class AwardOut(BaseModel):
    program_id: str
    key: str
    participant: str
    kind: str
    name: str | None
    badge: str | None
    cash: str | None = Field(json_schema_extra={"pattern": MONEY_PATTERN})
    currency: str | None
    earned_by: str | None
    earned_at: UtcDateTime | None


class SandbagFlag(BaseModel):
    lead_id: str
    rep_id: str | None
    kind: str
    reason: str | None
    changed_at: UtcDateTime


PayeePage = page_of(PayeeOut)
PlanPage = page_of(PlanOut)
StatementPage = page_of(StatementOut)
AuditEntryPage = page_of(AuditEntry)
ProgramPage = page_of(ProgramOut)
AwardPage = page_of(AwardOut)
SandbagFlagPage = page_of(SandbagFlag)
