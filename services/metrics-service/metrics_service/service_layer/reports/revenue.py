"""Production (leads generated and revenue won), and the wins every money report converts (the SQL:
adapters/reports/revenue.py)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch
from ...adapters.reports.sql import duration_months
from ...domain import exchange, formulas
from ...domain.exchange import Converted
from ...domain.periods import from_ts, period_bounds, quarters_overlapping, to_ts
from .. import currencies
from .common import Row, dialect_of, group_name, name_groups


def money_fields(value: Converted, name: str) -> Row:
    """A converted figure as report fields: `name` (in `currency`), the original amounts per currency, and
    what could not be converted (never inside `name`)."""
    return {name: formulas.money(value.amount), "currency": value.currency,
            f"{name}_by_currency": exchange.amounts(value.by_currency),
            f"{name}_unconverted": exchange.amounts(value.unconverted)}


async def production(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row]]:
    months = duration_months(dialect_of(session), f)
    by_month = months is not None and f.group_by in (None, "rep", "team")  # whole months: m_created_months
    created = {r.g: int(r.n) for r in await fetch(session, queries.revenue.leads_created(f, months if by_month
                                                                                          else None))}
    money = await currencies.setup(session, f.org_id)
    won = await won_money(session, f, money)
    rows = []
    for k in sorted(set(created) | set(won)):
        deals, value = won.get(k, (0, Converted(money.currency)))
        rows.append({"group": group_name(k), "leads_generated": created.get(k, 0), "deals_won": deals,
                     **money_fields(value, "revenue")})
    quarters: list[Row] = []
    if f.from_ts is not None and f.to_ts is not None:
        for q_start, q_end in quarters_overlapping(from_ts(f.from_ts), from_ts(f.to_ts)):
            qf = Filters(org_id=f.org_id, from_ts=to_ts(q_start), to_ts=to_ts(q_end), pipeline_id=f.pipeline_id,
                         rep_id=f.rep_id)
            _, value = (await won_money(session, qf, money)).get("", (0, Converted(money.currency)))
            reps = await quota_reps(session, f.org_id, q_start.date(), q_end.date(), f.rep_id)
            quarters.append({"quarter_start": q_start.date().isoformat(), **money_fields(value, "revenue"),
                             "quota_reps": reps,
                             "avg_revenue_per_rep": formulas.money(value.amount / reps) if reps else None})
    return await name_groups(session, f, rows), quarters


async def quota_reps(session: AsyncSession, org_id: str, start: date, end: date, rep_id: str | None = None) -> int:
    """Reps carrying a quota for a period that overlaps [start, end) (month, quarter or year quotas)."""
    reps = set()
    for q in await fetch(session, queries.revenue.rep_quotas_begun_before(org_id, end, rep_id)):
        begun = as_day(q.period_start)
        _, ends = period_bounds(q.period, datetime(begun.year, begun.month, begun.day))
        if ends.date() > start:
            reps.add(q.scope_id)
    return len(reps)


def as_day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def won_money(session: AsyncSession, f: Filters, money: currencies.Setup, target: str | None = None
                    ) -> dict[str, tuple[int, Converted]]:
    """Per group: deals won and their value converted into `target` (default: the reporting currency), for
    wins in [from, to) credited to the owner at the win. Each won value (LeadWon's, else the lead's) is
    converted at the rate in force on the day of the win. Whole months whose wins are all in the target
    currency are read from m_closed_months; otherwise the wins are summed per currency and day."""
    target = target or money.currency
    f = f.credited("credit")
    dialect = dialect_of(session)
    months = duration_months(dialect, f)
    out: dict[str, tuple[int, Converted]] = {}
    if months is not None and f.group_by in (None, "rep", "team") and not await fetch(
            session, queries.revenue.foreign_wins(f, months, target)):
        for r in await fetch(session, queries.revenue.won_by_month(f, months)):
            value = Decimal(r.revenue or 0)
            out[r.g] = (int(r.n), Converted(target, value, {target: value} if value else {}))
        return out
    for w in await fetch(session, queries.revenue.won_by_currency_and_day(f, dialect, target)):
        deals, converted = out.get(w.g, (0, Converted(target)))
        converted.add(money.rates, w.currency, w.amount, exchange.day_of(w.day))
        out[w.g] = (deals + int(w.n), converted)
    return out


async def won_between(session: AsyncSession, org_id: str, scope: str, start_ts: float, end_ts: float,
                      currency: str | None = None) -> dict[str, Converted]:
    """Won value per scope id ('' for the org) for wins in [start, end), credited to the owner at the win,
    converted into `currency` (default: the reporting currency) at each win's date."""
    f = Filters(org_id=org_id, from_ts=start_ts, to_ts=end_ts, group_by={"org": None, "team": "team",
                                                                         "rep": "rep"}[scope])
    money = await currencies.setup(session, org_id)
    return {g: value for g, (_, value) in (await won_money(session, f, money, currency)).items()}
