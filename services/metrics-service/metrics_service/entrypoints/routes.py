"""The service's HTTP API (docs/architecture.md: /v1/reports, /v1/quotas, /v1/forecasts).

Each report's description below is its definition, exactly as the SQL in adapters/reports/ computes it.
Every report answers JSON, or CSV with `?format=csv` (one line per row, columns = the row's fields).
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date as Day
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, ManagerPrincipal, Principal
from salesflow_shared.clock import Clock, Rfc3339
from salesflow_shared.contract import CSV_FILE, camel_case, returns
from salesflow_shared.currency import CurrencyCode
from salesflow_shared.errors import (
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from salesflow_shared.idempotency import IdempotencyDep, IdempotentRequest, once
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from salesflow_shared.preconditions import strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.reports import COMMON, DEFINITIONS, Filters
from ..domain import formulas
from ..domain.exchange import Rate
from ..domain.periods import (
    PERIODS,
    Period,
    as_utc,
    to_ts,
)
from ..service_layer import currencies, forecasting, quotas
from ..service_layer.projector import rebuild_in
from ..service_layer.reports.activities import activities
from ..service_layer.reports.adoption import adoption
from ..service_layer.reports.coaching import coaching
from ..service_layer.reports.common import Row
from ..service_layer.reports.durations import response_time, sales_cycle
from ..service_layer.reports.forecast import forecast
from ..service_layer.reports.funnel import funnel
from ..service_layer.reports.leaderboard import leaderboard
from ..service_layer.reports.outcomes import conversion, deal_size, handovers, win_rate
from ..service_layer.reports.quotas import quota_attainment
from ..service_layer.reports.revenue import production
from ..service_layer.reports.stalled import stalled_deals
from . import responses as R

router = APIRouter(prefix="/v1", tags=["metrics-service"])

GroupByParam = Literal["rep", "team", "product_line", "territory", "source"]
Format = Literal["json", "csv"]


async def clock_of(context: ContextDep) -> Clock:  # async: a plain `def` dependency runs in the thread pool
    return context.clock


ClockDep = Annotated[Clock, Depends(clock_of)]


MIN_REPORT_DATE = datetime(1900, 1, 1)
MAX_REPORT_DATE = datetime(2199, 12, 31)


class ReportQuery:
    def __init__(self, principal: Principal, clock: Clock, from_: datetime | None, to: datetime | None,
                 pipeline: str | None, group_by: GroupByParam | None, format: Format) -> None:
        for name, moment in (("from", from_), ("to", to)):
            # Reports walk the period by quarter and month: keep it to dates a sales history can have
            # (this also keeps far-off dates from overflowing when converted to UTC).
            if moment is not None and not (MIN_REPORT_DATE <= moment.replace(tzinfo=None) <= MAX_REPORT_DATE):
                raise ValidationFailed.single(name, "must be between 1900-01-01 and 2199-12-31")
        if from_ is not None and to is not None and as_utc(to) <= as_utc(from_):
            raise ValidationFailed.single("to", "must be after `from`")
        self.principal = principal
        self.format = format
        self.now = clock.now()
        self.filters = Filters(
            org_id=principal.org_id, from_ts=to_ts(from_), to_ts=to_ts(to), pipeline_id=pipeline,
            group_by=group_by, rep_id=None if principal.sees_whole_org else principal.user_id, now=self.now)
        self.echo = {"from": from_.isoformat() if from_ else None, "to": to.isoformat() if to else None,
                     "pipeline": pipeline, "group_by": group_by,
                     "scope": "org" if principal.sees_whole_org else f"rep:{principal.user_id}"}


async def report_query(
        principal: CurrentPrincipal, context: ContextDep,
        from_: Annotated[Rfc3339 | None, Query(alias="from", description="period start (inclusive)")] = None,
        to: Annotated[Rfc3339 | None, Query(description="period end (exclusive)")] = None,
        pipeline: Annotated[str | None, Query(max_length=100)] = None,
        group_by: GroupByParam | None = None,
        format: Format = "json") -> ReportQuery:
    # A function, not the class itself as the dependency: FastAPI runs a class's __init__ in its thread pool.
    # The context rather than ClockDep: one dependency fewer to solve on every report (issue 21).
    return ReportQuery(principal, context.clock, from_, to, pipeline, group_by, format)


Q = Annotated[ReportQuery, Depends(report_query)]


async def report_uow(context: ContextDep) -> AsyncIterator[UnitOfWork]:
    """A report's unit of work: on PostgreSQL, its statements each on its own (repository.report_reads)."""
    # From the context (as get_uow makes it) rather than on UowDep: one generator dependency per report, not two.
    async with context.uow() as uow:
        if uow.dialect != "postgresql":
            yield uow
            return
        async with repository.report_reads(uow.session):
            yield uow


ReportUow = Annotated[UnitOfWork, Depends(report_uow)]


def respond(name: str, q: ReportQuery, rows: list[Row], **extra: Any) -> Response:
    if q.format == "csv":
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    # orjson: a coaching report at 1M leads is ~1.5 MB of JSON, some 25 ms with the standard library, ~3 ms here
    return Response(orjson.dumps({"report": name, "definition": DEFINITIONS[name], "filters": q.echo,
                                  "generated_at": q.now.isoformat(), "rows": rows, **extra}),
                    media_type="application/json")


def _doc(name: str) -> dict[str, Any]:
    """The report's documentation: its typed JSON envelope (responses.py), or its rows as CSV (format=csv)."""
    # Reports keep `from`/`to` (and a period's `date`) to the years a sales history can have, `to` after `from`,
    # and refuse a grouping the report has no use for.
    declared = returns(R.REPORTS[name], description="The report as JSON, or its rows as CSV (format=csv)",
                       checked_beyond_schema=("from", "to", "date", "group_by"))
    declared["responses"][200]["content"] = {"text/csv": {"schema": CSV_FILE}}
    return {"summary": name.replace("_", " ").capitalize(), "operation_id": camel_case(f"get_{name}_report"),
            "description": DEFINITIONS[name] + "\n\n" + COMMON, **declared}


RowsReport = Callable[[AsyncSession, Filters], Awaitable[list[Row]]]


def _rows_report(name: str, make: RowsReport) -> None:
    """GET /v1/reports/<name, dashed>: a report that is its rows alone, made from the filters every report takes."""

    async def report(q: Q, uow: ReportUow) -> Response:
        return respond(name, q, await make(uow.session, q.filters))

    report.__name__ = report.__qualname__ = f"{name}_report"
    router.get(f"/reports/{name.replace('_', '-')}", **_doc(name))(report)


for _name, _make in (("funnel", funnel), ("win_rate", win_rate), ("deal_size", deal_size),
                     ("sales_cycle", sales_cycle), ("response_time", response_time), ("conversion", conversion)):
    _rows_report(_name, _make)


@router.get("/reports/activities", **_doc("activities"))
async def activities_report(q: Q, uow: ReportUow) -> Response:
    if q.filters.group_by not in (None, "rep", "team"):
        raise ValidationFailed.single("group_by", "activities are counted per rep: use rep or team")
    return respond("activities", q, await activities(uow.session, q.filters))


@router.get("/reports/production", **_doc("production"))
async def production_report(q: Q, uow: ReportUow) -> Response:
    rows, quarters = await production(uow.session, q.filters)
    return respond("production", q, rows, quarters=quarters)


PeriodParam = Annotated[Period, Query(description="month, quarter or year")]
DateParam = Annotated[Day | None, Query(description="a day in the period (default: today)")]


def _moment(day: Day | None, now: datetime) -> datetime:
    if day is not None and not 1900 <= day.year <= 9000:
        raise ValidationFailed.single("date", "must be between the years 1900 and 9000")
    return datetime(day.year, day.month, day.day, tzinfo=now.tzinfo) if day else now


@router.get("/reports/forecast", **_doc("forecast"))
async def forecast_report(q: Q, uow: ReportUow, period: PeriodParam = "quarter", date: DateParam = None) -> Response:
    return respond("forecast", q, await forecast(uow.session, q.filters, period, _moment(date, q.now)))


@router.get("/reports/forecast-accuracy", **_doc("forecast_accuracy"))
async def forecast_accuracy_report(q: Q, uow: ReportUow, period: PeriodParam = "quarter",
                                   scope: Literal["org", "team", "rep"] = "org") -> Response:
    scope_id = None
    if not q.principal.sees_whole_org:
        if scope != "rep":
            raise Forbidden("a rep sees only their own forecast accuracy (scope=rep)")
        scope_id = q.principal.user_id
    rows = await forecasting.accuracy(uow, q.principal.org_id, period, scope, q.now, scope_id)
    return respond("forecast_accuracy", q, rows)


@router.get("/reports/quota-attainment", **_doc("quota_attainment"))
async def quota_attainment_report(q: Q, uow: ReportUow, period: Annotated[Period | None, Query(
        description="month, quarter or year; default: every quota whose own period contains `date`")] = None,
                                  date: DateParam = None) -> Response:
    periods = [period] if period is not None else list(PERIODS)
    rows = await quota_attainment(uow.session, q.principal.org_id, periods, _moment(date, q.now), q.now,
                                          None if q.principal.sees_whole_org else q.principal.user_id)
    return respond("quota_attainment", q, rows)


@router.get("/reports/adoption", **_doc("adoption"))
async def adoption_report(q: Q, uow: ReportUow) -> Response:
    return respond("adoption", q, await adoption(uow.session, q.filters), time_basis={
        "coverage": f"open leads as of {q.now.isoformat()} (from/to do not apply)",
        "compliance": "stage exits with the exit in [from, to)"})


@router.get("/reports/coaching", **_doc("coaching"))
async def coaching_report(q: Q, uow: ReportUow) -> Response:
    _per_rep_and_stage(q, "coaching")
    rows, stalls_most, unassigned = await coaching(uow.session, q.filters)
    return respond("coaching", q, rows, stalls_most=stalls_most, unassigned=unassigned)


def _per_rep_and_stage(q: ReportQuery, report: str) -> None:
    if q.filters.group_by is not None:
        raise ValidationFailed.single("group_by", f"{report} is per rep and stage against the rep's team; "
                                                  "group_by does not apply")


@router.get("/reports/stalled-deals", **_doc("stalled_deals"))
async def stalled_deals_report(q: Q, uow: ReportUow) -> Response:
    _per_rep_and_stage(q, "stalled-deals")
    rows, unassigned = await stalled_deals(uow.session, q.filters)
    return respond("stalled_deals", q, rows, unassigned=unassigned)


_rows_report("handovers", handovers)


@router.get("/reports/leaderboard", **_doc("leaderboard"))
async def leaderboard_report(q: Q, uow: ReportUow, period: PeriodParam = "month", date: DateParam = None,
                             metric: Literal["revenue", "deals_won", "activities", "quota_attainment"] = "revenue"
                             ) -> Response:
    rows = await leaderboard(uow.session, q.filters, metric, period, _moment(date, q.now))
    return respond("leaderboard", q, rows)


@router.post("/reports/rebuild", summary="Rebuild this org's read models from the event log (admin)",
             description="Deletes the org's read models and replays its event log into them (in event-id "
                         "order, unrelated to arrival order). The reports afterwards equal the incremental ones.",
             operation_id="rebuildReports", **returns(R.RebuildResult))
async def rebuild(principal: AdminPrincipal, context: ContextDep, uow: UowDep, idem: IdempotencyDep) -> JSONResponse:
    return await once(idem, uow, org_id=principal.org_id, scope="reports:rebuild", payload=None,
                      act=lambda: rebuild_in(uow.session, context.database.dialect, principal.org_id))


# ------------------------------------------------------------------ quotas (admin writes, everyone reads)
class QuotaIn(BaseModel):
    scope: Literal["rep", "team"]
    scope_id: str = Field(min_length=1, max_length=100)
    period: Period
    period_start: Day = Field(description="first day of the month, quarter or year")
    amount: Decimal = Field(gt=0, max_digits=16, decimal_places=2)
    currency: CurrencyCode = Field(description="ISO 4217; the quota is compared in this currency")


class QuotaPatch(BaseModel):
    amount: Decimal | None = Field(default=None, gt=0, max_digits=16, decimal_places=2)
    currency: CurrencyCode | None = None


def quota_out(row: repository.Quota) -> dict[str, Any]:
    return {"quota_id": row.quota_id, "scope": row.scope, "scope_id": row.scope_id, "period": row.period,
            "period_start": row.period_start.isoformat(), "amount": formulas.money(row.amount),
            "currency": row.currency, "version": row.version}


async def _quota(uow: UowDep, principal: Principal, quota_id: str) -> repository.Quota:
    row = await repository.get_quota(uow.session, principal.org_id, quota_id)
    if row is None or (not principal.sees_whole_org and (row.scope != "rep" or row.scope_id != principal.user_id)):
        raise NotFound(f"quota {quota_id} not found")
    return row


@router.post("/quotas", status_code=201, summary="Create a quota for a rep or team and a period (admin)",
             operation_id="createQuota",
             **returns(R.QuotaOut, status=201, etag=True, checked_beyond_schema=("amount", "period_start")))
async def create_quota(body: QuotaIn, principal: AdminPrincipal, uow: UowDep, idem: IdempotencyDep) -> Response:
    quotas.check_period_start(body.period, body.period_start)  # refused before the key is looked at
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="quotas.create",
                              payload=body.model_dump(mode="json"))
    if replay is not None:
        return replay
    row = await quotas.create_quota(uow, principal.org_id, body.model_dump())
    resp = await idem.complete(uow.session, status_code=201, body=quota_out(row),
                               headers={"ETag": quotas.quota_etag(row), "Location": f"/v1/quotas/{row.quota_id}"})
    await uow.commit()
    return resp


@router.get("/quotas", summary="List quotas (a rep sees their own)",
            operation_id="listQuotas", **returns(R.QuotaPage))
async def list_quotas(principal: CurrentPrincipal, uow: UowDep, limit: LimitParam = 100, cursor: CursorParam = None,
                      period: Period | None = None, scope: Literal["rep", "team"] | None = None,
                      scope_id: str | None = None) -> dict[str, Any]:
    after = decode_cursor(cursor, 1)
    rows = await repository.list_quotas(uow.session, principal.org_id,
                                        rep_id=None if principal.sees_whole_org else principal.user_id,
                                        period=period, scope=scope, scope_id=scope_id,
                                        after=after[0] if after else None, limit=limit + 1)
    items = [quota_out(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor([items[-1]["quota_id"]]) if len(rows) > limit else None}


@router.get("/quotas/{quota_id}", summary="One quota, with its ETag",
            operation_id="getQuota", **returns(R.QuotaOut, etag=True))
async def get_quota(quota_id: str, principal: CurrentPrincipal, uow: UowDep) -> Response:
    row = await _quota(uow, principal, quota_id)
    return JSONResponse(quota_out(row), headers={"ETag": quotas.quota_etag(row)})


@router.patch("/quotas/{quota_id}", summary="Change a quota's amount or currency (admin, If-Match)",
              operation_id="updateQuota", **returns(R.QuotaOut, etag=True, checked_beyond_schema=("amount",)))
async def patch_quota(quota_id: str, body: QuotaPatch, principal: AdminPrincipal, uow: UowDep,
                      if_match: Annotated[str | None, Header()] = None) -> Response:
    row = await quotas.change_quota(uow, principal.org_id, quota_id, body.model_dump(exclude_none=True),
                                    if_match=if_match)
    await uow.commit()
    return JSONResponse(quota_out(row), headers={"ETag": quotas.quota_etag(row)})


@router.delete("/quotas/{quota_id}", status_code=204, summary="Delete a quota (admin)", operation_id="deleteQuota")
async def delete_quota(quota_id: str, principal: AdminPrincipal, uow: UowDep) -> Response:
    await quotas.remove_quota(uow, principal.org_id, quota_id)
    await uow.commit()
    return Response(status_code=204)


# ------------------------------------------------------------------ forecast snapshots
class FreezeIn(BaseModel):
    period: Period
    date: Day | None = Field(default=None, description="a day in the period (default: today)")


@router.post("/forecasts/snapshots", status_code=201,
             summary="Freeze the forecast of a period now (admin); the worker does it at each period's start",
             description="Freezes org, team and rep forecasts (as /v1/reports/forecast computes them) for the "
                         "period containing `date`, publishing ForecastSnapshotted for each, in the reporting "
                         "currency (open pipeline converted at the rates in force today). Scopes already "
                         "frozen for that period are kept as they are. A period that has ended is refused (422).",
             operation_id="freezeForecast", **returns(R.ForecastSnapshotsFrozen, status=201,
                                                      checked_beyond_schema=("date",)))
async def freeze_forecast(body: FreezeIn, principal: AdminPrincipal, uow: UowDep, clock: ClockDep,
                          idem: IdempotencyDep) -> Response:
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope="forecasts.freeze",
                              payload=body.model_dump(mode="json"))
    if replay is not None:
        return replay
    now = clock.now()
    created = await forecasting.freeze_running(uow, principal.org_id, body.period, _moment(body.date, now), now)
    resp = await idem.complete(uow.session, status_code=201, body={"items": created})
    await uow.commit()
    return resp


@router.get("/forecasts/snapshots", summary="Frozen forecast snapshots (managers and admins)",
            operation_id="listForecastSnapshots", **returns(R.ForecastSnapshotPage))
async def list_snapshots(principal: ManagerPrincipal, uow: UowDep, period: Period | None = None,
                         limit: LimitParam = 100, cursor: CursorParam = None) -> dict[str, Any]:
    after = decode_cursor(cursor, 1)
    rows = await repository.list_snapshots(uow.session, principal.org_id, period, after[0] if after else None,
                                           limit + 1)
    items = [forecasting.snapshot_out(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": encode_cursor([items[-1]["snapshot_id"]]) if len(rows) > limit else None}


# ------------------------------------------------------------------ reporting currency and exchange rates
class ReportingCurrencyIn(BaseModel):
    currency: CurrencyCode = Field(description="ISO 4217: every report's money figures are converted into it")


@router.get("/reporting-currency", summary="The org's reporting currency (USD until an admin sets one; ETag \"0\")",
            operation_id="getReportingCurrency", **returns(R.ReportingCurrencyOut, etag=True))
async def get_reporting_currency(principal: CurrentPrincipal, uow: UowDep) -> JSONResponse:
    currency, version = await currencies.reporting_currency(uow.session, principal.org_id)
    return JSONResponse({"currency": currency}, headers={"ETag": strong_etag(version)})


@router.put("/reporting-currency", summary="Set the org's reporting currency (admin, If-Match: the ETag read, "
            "\"0\" before the first); publishes ReportingCurrencySet",
            operation_id="setReportingCurrency", **returns(R.ReportingCurrencySet, etag=True))
async def put_reporting_currency(body: ReportingCurrencyIn, principal: AdminPrincipal, uow: UowDep,
                                 if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    out = await currencies.set_reporting_currency(uow, principal.org_id, body.currency, if_match)
    await uow.commit()
    return JSONResponse(out, headers={"ETag": strong_etag(out["version"])})


class RateIn(BaseModel):
    base_currency: CurrencyCode
    quote_currency: CurrencyCode
    rate: Decimal = Field(gt=0, lt=Decimal("1e12"), description="1 base_currency = rate quote_currency")
    valid_from: Day = Field(description="the first UTC day it is in force (until the pair's next rate)")


class RatesIn(BaseModel):
    rates: list[RateIn] = Field(min_length=1, max_length=currencies.MAX_CSV_ROWS)


@router.get("/exchange-rates", summary="The org's dated exchange rates",
            operation_id="listExchangeRates", **returns(R.ExchangeRates))
async def list_rates(principal: CurrentPrincipal, uow: UowDep, base_currency: str | None = None,
                     quote_currency: str | None = None) -> dict[str, Any]:
    rates = await repository.rates(uow.session, principal.org_id, base_currency and base_currency.upper(),
                                   quote_currency and quote_currency.upper())
    return {"items": [currencies.rate_out(rate) for rate in rates]}


async def _store_rates(uow: UnitOfWork, idem: IdempotentRequest, principal: Principal, rates: list[Rate],
                       payload: Any) -> JSONResponse:
    async def store() -> dict[str, Any]:
        changed = await currencies.set_rates(uow, principal.org_id, rates)
        return {"received": len(rates), "changed": len(changed), "items": changed}

    return await once(idem, uow, org_id=principal.org_id, scope="exchange-rates", payload=payload, act=store)


@router.post("/exchange-rates", summary="Set dated exchange rates (admin); the same pair and day is replaced",
             description="Each rate publishes ExchangeRateSet when it is new or changed. A report converts an "
                         "amount at the rate of its pair in force on the amount's date (see each report).",
             operation_id="setExchangeRates", **returns(R.ExchangeRatesStored, checked_beyond_schema=("rates",)))
async def post_rates(body: RatesIn, principal: AdminPrincipal, uow: UowDep, idem: IdempotencyDep) -> JSONResponse:
    errors = [e for i, r in enumerate(body.rates) for e in currencies.check_rate(
        r.base_currency, r.quote_currency, r.rate, f"rates[{i}].")]
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return await _store_rates(uow, idem, principal, [Rate(r.base_currency, r.quote_currency, r.valid_from, r.rate)
                                                     for r in body.rates], body.model_dump(mode="json"))


@router.post("/exchange-rates/csv", summary="Upload dated exchange rates as CSV (admin; all or nothing)",
             description="Body: text/csv with the header base_currency,quote_currency,rate,valid_from. A bad row "
                         "refuses the whole file (422 naming `rows[n].field`, n counting data rows from 1).",
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}},
                                            "required": True}},
             operation_id="uploadExchangeRates", **returns(R.ExchangeRatesStored,
                                                           checked_beyond_schema=("file", "rows")))
async def upload_rates(request: Request, principal: AdminPrincipal, uow: UowDep,
                       idem: IdempotencyDep) -> JSONResponse:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/csv", "text/plain"):
        raise UnsupportedMediaType("send the file as the request body with Content-Type: text/csv")
    body = await request.body()
    if len(body) > 2_000_000:
        raise PayloadTooLarge("a rates file may have at most 2,000,000 bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed.single("file", "must be UTF-8 text") from None
    # The same file again under the same key is a retry; the key's fingerprint is the file's digest.
    return await _store_rates(uow, idem, principal, currencies.parse_rates_csv(text),
                              {"csv_sha256": hashlib.sha256(body).hexdigest()})
