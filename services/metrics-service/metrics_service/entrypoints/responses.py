"""What metrics-service answers, as models for the OpenAPI document (routes build the JSON; contract tests
check it).

Every report is one envelope `{report, definition, filters, generated_at, rows, ...}` with rows of its own
shape (`FunnelReport`, `WinRateReport`, ...). Row fields other than the grouping are optional: which ones a
row carries depends on `group_by` and the report's options. Money is a decimal string, percentages numbers.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from salesflow_shared.contract import MONEY_PATTERN, page_of

Money = Field(default=None, json_schema_extra={"pattern": MONEY_PATTERN})


class ReportFilters(BaseModel):
    """The filters the report was computed with (as understood by the server)."""

    model_config = ConfigDict(populate_by_name=True)
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    pipeline: str | None
    group_by: str | None
    scope: str = Field(description="org, or rep:<user id> for a rep (who sees their own figures)")


class _Row(BaseModel):
    group: str | None = Field(default=None, description="the group_by value of the row (null: no grouping)")
    rep_name: str | None = None


class FunnelRow(_Row):
    pipeline_id: str | None = None
    stage_id: str | None = None
    stage_name: str | None = None
    position: int | None = None
    reached: int | None = None
    conversion_pct: float | None = None
    conversion_from_first_pct: float | None = None
    drop_off: int | None = None
    median_days_in_stage: float | None = None


class WinRateRow(_Row):
    won: int | None = None
    lost: int | None = None
    win_rate_pct: float | None = None


class DealSizeRow(_Row):
    currency: str | None = None
    deals: int | None = None
    total: str | None = Money
    mean: str | None = Money
    median: str | None = Money


class SalesCycleRow(_Row):
    won: int | None = None
    cycle_mean_days: float | None = None
    cycle_median_days: float | None = None
    decided_after_ask: int | None = None
    ask_to_decision_mean_days: float | None = None
    ask_to_decision_median_days: float | None = None


class ResponseTimeRow(_Row):
    leads: int | None = None
    responded: int | None = None
    not_responded: int | None = None
    median_hours: float | None = None
    p90_hours: float | None = None


class ConversionRow(_Row):
    created: int | None = None
    qualified: int | None = None
    proposals: int | None = None
    won: int | None = None
    qualification_rate_pct: float | None = None
    proposal_rate_pct: float | None = None
    close_rate_pct: float | None = None


class ActivitiesRow(_Row):
    calls: int | None = None
    talk_minutes: float | None = None
    emails_logged: int | None = None
    emails_sequence: int | None = None
    meetings: int | None = None
    demos: int | None = None
    proposals: int | None = None
    notes: int | None = None
    records_entered: int | None = None
    records_updated: int | None = None


class ProductionRow(_Row):
    leads_generated: int | None = None
    deals_won: int | None = None
    revenue: str | None = Money


class ProductionQuarter(BaseModel):
    quarter_start: date
    revenue: str | None = Money
    quota_reps: int = Field(description="the reps carrying a quota for a period that overlaps the quarter")
    avg_revenue_per_rep: str | None = Money


class ForecastRow(_Row):
    period: str | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    won_so_far: str | None = Money
    open_pipeline: str | None = Money
    weighted_by_stage: str | None = Money
    historical_win_rate_pct: float | None = None
    weighted_by_history: str | None = Money
    best_case: str | None = Money


class ForecastSnapshotOut(BaseModel):
    """A forecast frozen at a period's start (org, team or rep)."""

    snapshot_id: str
    period: str
    period_start: datetime
    period_end: datetime
    scope: str
    scope_id: str | None
    won_so_far: str | None = Money
    weighted_by_stage: str | None = Money
    weighted_by_history: str | None = Money
    best_case: str | None = Money


class ForecastAccuracyRow(ForecastSnapshotOut):
    actual: str | None = Money
    accuracy_pct: float | None = None
    bias: str | None = Money
    bias_pct: float | None = None
    history_accuracy_pct: float | None = None
    history_bias: str | None = Money


class _QuotaOf(BaseModel):
    # which quota a row is about: its id and whose it is (a rep or a team); a base of the models that name one
    quota_id: str
    scope: str
    scope_id: str


class QuotaAttainmentRow(_QuotaOf):
    rep_name: str | None = None
    period: str
    period_start: date
    quota: str | None = Money
    currency: str | None = None
    actual: str | None = Money
    attainment_pct: float | None = None
    elapsed_pct: float | None = None
    pace_pct: float | None = None
    projected: str | None = Money


class AdoptionRow(_Row):
    open_leads: int | None = None
    covered: int | None = None
    coverage_pct: float | None = None
    stage_exits: int | None = None
    compliant_exits: int | None = None
    compliance_pct: float | None = None


class CoachingRow(BaseModel):
    rep_id: str | None = None
    rep_name: str | None = None
    team_id: str | None = None
    pipeline_id: str | None = None
    stage_id: str | None = None
    position: int | None = None
    exits: int | None = None
    converted: int | None = None
    conversion_pct: float | None = None
    team_exits: int | None = None
    team_conversion_pct: float | None = None
    conversion_vs_team_pts: float | None = None
    median_days_in_stage: float | None = None
    team_median_days_in_stage: float | None = None
    median_vs_team_ratio: float | None = None


class CoachingStall(BaseModel):
    rep_id: str | None
    rep_name: str | None
    pipeline_id: str | None
    stage_id: str | None
    median_days_in_stage: float | None
    team_median_days_in_stage: float | None
    median_vs_team_ratio: float | None


class StalledDealRow(BaseModel):
    lead_id: str
    rep_id: str | None = None
    rep_name: str | None = None
    team_id: str | None = None
    pipeline_id: str | None = None
    stage_id: str | None = None
    days_in_stage: float | None = None
    team_p75_days: float | None = None
    days_over: float | None = None


class LeaderboardRow(BaseModel):
    """One rep's rank by the chosen metric (the row carries that metric's field)."""

    rank: int
    rep_id: str | None
    rep_name: str | None = None
    revenue: str | None = Money
    deals_won: int | None = None
    activities: int | None = None
    quota_attainment: float | None = Field(default=None, description="percent of the rep's quota")


class HandoversRow(_Row):
    """Won customers now owned by account management (someone other than the closer), per current owner."""

    currency: str | None = None
    customers: int | None = None
    closers: int | None = None
    won_value: str | None = Money


class ReportEnvelope(BaseModel):
    report: str
    definition: str
    filters: ReportFilters
    generated_at: datetime


def _report(name: str, row: type[BaseModel], **extra: Any) -> type[ReportEnvelope]:
    fields: dict[str, Any] = {"rows": (list[row], ...), **extra}  # type: ignore[valid-type]  # a model made at run time
    return create_model(name, __base__=ReportEnvelope, **fields)


REPORTS: dict[str, type[BaseModel]] = {
    "funnel": _report("FunnelReport", FunnelRow),
    "win_rate": _report("WinRateReport", WinRateRow),
    "deal_size": _report("DealSizeReport", DealSizeRow),
    "sales_cycle": _report("SalesCycleReport", SalesCycleRow),
    "response_time": _report("ResponseTimeReport", ResponseTimeRow),
    "conversion": _report("ConversionReport", ConversionRow),
    "activities": _report("ActivitiesReport", ActivitiesRow),
    "production": _report("ProductionReport", ProductionRow, quarters=(list[ProductionQuarter], ...)),
    "forecast": _report("ForecastReport", ForecastRow),
    "forecast_accuracy": _report("ForecastAccuracyReport", ForecastAccuracyRow),
    "quota_attainment": _report("QuotaAttainmentReport", QuotaAttainmentRow),
    "adoption": _report("AdoptionReport", AdoptionRow),
    "coaching": _report("CoachingReport", CoachingRow, stalls_most=(list[CoachingStall], ...)),
    "stalled_deals": _report("StalledDealsReport", StalledDealRow),
    "leaderboard": _report("LeaderboardReport", LeaderboardRow),
    "handovers": _report("HandoversReport", HandoversRow),
}


class RebuildResult(BaseModel):
    events_replayed: int


class QuotaOut(_QuotaOf):
    """A rep's or team's quota for a period; `version` is in its ETag."""

    period: str
    period_start: date
    amount: str = Field(pattern=MONEY_PATTERN)
    currency: str
    version: int


class ForecastSnapshotsFrozen(BaseModel):
    items: list[ForecastSnapshotOut]


class ReportingCurrencyOut(BaseModel):
    """The org's reporting currency (ISO 4217); reports convert amounts into it."""

    currency: str = Field(pattern=r"^[A-Z]{3}$")


class ReportingCurrencySet(ReportingCurrencyOut):
    version: int


class ExchangeRateOut(BaseModel):
    """1 base_currency = rate quote_currency from valid_from (a UTC day) until the pair's next rate."""

    base_currency: str = Field(pattern=r"^[A-Z]{3}$")
    quote_currency: str = Field(pattern=r"^[A-Z]{3}$")
    rate: str = Field(description="decimal string")
    valid_from: date


class ExchangeRates(BaseModel):
    items: list[ExchangeRateOut]


class ExchangeRatesStored(BaseModel):
    """How many rates were received, and the ones that were new or changed (each published ExchangeRateSet)."""

    received: int
    changed: int
    items: list[ExchangeRateOut]


QuotaPage = page_of(QuotaOut)
ForecastSnapshotPage = page_of(ForecastSnapshotOut)
