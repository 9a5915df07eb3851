"""Leads generated and revenue won (production), and the wins every money report converts."""
from __future__ import annotations

from datetime import date
from typing import NamedTuple

from ...domain.periods import DAY_S, Period
from .sql import WON_CURRENCY, WON_VALUE, Dialect, Filters, Months, Number, Query, Sql, bound, month_range

PRODUCTION = (
    "Production: leads_generated = leads created in [from, to) (credited to the owner at creation); "
    "deals_won and revenue = leads won (final outcome) with the win in [from, to) (credited to the owner at "
    "the win), revenue = sum of won values (LeadWon.value, else the lead's) in the org's reporting currency "
    + "(`currency`), each converted at the rate in force on the day of its win; revenue_by_currency = the "
    "original amounts per currency; revenue_unconverted = amounts with no rate that day (named, not in "
    "revenue). quarters: for each calendar quarter overlapping [from, to), the revenue won in the whole "
    "quarter (the same way) / quota_reps, the reps carrying a quota (month, quarter or year) for a period "
    "that overlaps the quarter (null when none).")


class LeadsCreated(NamedTuple):
    g: str
    n: Number


class WonByMonth(NamedTuple):
    g: str
    n: Number
    revenue: Number | None


class ForeignWin(NamedTuple):
    x: int


class WonOnDay(NamedTuple):
    """A group's wins in one currency on one UTC day number (0: already in the target currency)."""

    g: str
    currency: str
    day: int
    n: int
    amount: Number


class RepQuotaPeriod(NamedTuple):
    scope_id: str
    period: Period
    period_start: date | str  # a date (PostgreSQL) or its ISO text (SQLite)


def leads_created(f: Filters, months: Months | None) -> Query[LeadsCreated]:
    """Per group (g): n, the leads created in the period (by the owner at creation); `months`: from
    m_created_months."""
    f = f.credited("first")
    if months is not None:
        where, period = f.rollup_where(), month_range(*months)
        return Sql(f"SELECT {f.rollup_group()} AS g, SUM(m.leads) AS n FROM m_created_months m "
                   f"WHERE {where.text} AND {period.text} GROUP BY 1", bound(where, period)).read_as(LeadsCreated)
    where = f.lead_where("created_ts")
    return Sql(f"SELECT {f.group_sql()} AS g, COUNT(*) AS n FROM m_leads l WHERE {where.text} GROUP BY 1",
               where.params).read_as(LeadsCreated)


def won_by_month(f: Filters, months: Months) -> Query[WonByMonth]:
    """Per group (g): n and revenue (the won values summed as they are) of the wins in these months, from
    m_closed_months (by the owner at the win)."""
    where, period = f.rollup_where(), month_range(*months)
    return Sql(f"SELECT {f.rollup_group()} AS g, SUM(m.leads) AS n, SUM(m.value) AS revenue "
               f"FROM m_closed_months m WHERE {where.text} AND m.outcome = 'won' AND "
               f"{period.text} GROUP BY 1", bound(where, period)).read_as(WonByMonth)


def foreign_wins(f: Filters, months: Months, target: str) -> Query[ForeignWin]:
    """A row when any win in these months is in another currency than `target` (or in none), from
    m_won_months."""
    where, period = f.rollup_where(), month_range(*months)
    return Sql(f"SELECT 1 AS x FROM m_won_months m WHERE {where.text} AND "
               f"{period.text} AND m.currency <> :target LIMIT 1",
               bound(where, period, target=target)).read_as(ForeignWin)


def won_by_currency_and_day(f: Filters, dialect: Dialect, target: str) -> Query[WonOnDay]:
    """Per group, currency and UTC day number of the win (g, currency, day, n, amount): the wins in the period
    (by the owner at the win); wins already in `target` need no rate and come as day 0."""
    f = f.credited("credit")
    # the UTC day number (periods.day_number); SQLite's CAST truncates (the same for times after 1970),
    # PostgreSQL's rounds, so it floors first
    day = (f"CAST(FLOOR(l.closed_ts / {DAY_S}) AS INTEGER)" if dialect == "postgresql"
           else f"CAST(l.closed_ts / {DAY_S} AS INTEGER)")
    where = f.lead_where("closed_ts")
    return Sql(f"""
SELECT {f.group_sql()} AS g, {WON_CURRENCY} AS currency,
       CASE WHEN {WON_CURRENCY} = :target THEN 0 ELSE {day} END AS day,
       COUNT(*) AS n, SUM(COALESCE({WON_VALUE}, 0)) AS amount
FROM m_leads l WHERE {where.text} AND l.outcome = 'won' GROUP BY 1, 2, 3""",
               bound(where, target=target)).read_as(WonOnDay)


def rep_quotas_begun_before(org_id: str, end: date, rep_id: str | None = None) -> Query[RepQuotaPeriod]:
    """The reps' quotas (scope_id, period, period_start) whose period starts before `end` (a rep: their own)."""
    params: dict[str, object] = {"org": org_id, "end": end}
    me = ""
    if rep_id is not None:
        me, params["me"] = " AND q.scope_id = :me", rep_id
    return Sql("SELECT q.scope_id, q.period, q.period_start FROM quotas q WHERE q.org_id = :org "
               f"AND q.scope = 'rep' AND q.period_start < :end{me}", params).read_as(RepQuotaPeriod)
