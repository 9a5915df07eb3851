"""Quota attainment: the quotas of a period against what was won in them (the quotas: adapters/reports/quotas.py;
the wins: revenue.py)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import fetch_quotas, names_of_reps
from ...domain import exchange, formulas
from ...domain.exchange import Converted
from ...domain.periods import PERIODS, Period, elapsed_share, period_bounds, to_ts
from .common import Row
from .revenue import won_between


async def quota_attainment(session: AsyncSession, org_id: str, periods: list[Period], moment: datetime,
                           now: datetime, rep_id: str | None = None) -> list[Row]:
    """The quotas of `periods` containing `moment` (a rep: their own) against what was won in them."""
    bounds = {p: period_bounds(p, moment) for p in periods}
    starts = {p: start.date() for p, (start, _) in bounds.items()}
    found = await fetch_quotas(session, queries.quotas.starting(org_id, starts, rep_id))
    found.sort(key=lambda r: (PERIODS.index(r.period), r.scope, r.scope_id))
    won: dict[tuple[str, str, str], dict[str, Converted]] = {}  # (period, scope, currency) → scope id → won
    names = await names_of_reps(session, org_id, {r.scope_id for r in found if r.scope == "rep"})
    rows = []
    for r in found:
        start, end = bounds[r.period]
        key = (r.period, r.scope, r.currency)
        if key not in won:  # wins converted into the quota's own currency, each at its win's date
            won[key] = await won_between(session, org_id, r.scope, to_ts(start), to_ts(end), r.currency)
        actual = won[key].get(r.scope_id, Converted(r.currency))
        share = elapsed_share(start, end, now)
        attainment = formulas.pct(actual.amount, r.amount)
        rows.append({"quota_id": r.quota_id, "scope": r.scope, "scope_id": r.scope_id,
                     "rep_name": names.get(r.scope_id) if r.scope == "rep" else None,
                     "period": r.period, "period_start": start.date().isoformat(), "quota": formulas.money(r.amount),
                     "currency": r.currency, "actual": formulas.money(actual.amount), "attainment_pct": attainment,
                     "elapsed_pct": round(share * 100, 2), "pace_pct": formulas.pace(attainment, share),
                     "projected": formulas.money(actual.amount / Decimal(share)) if share > 0 else None,
                     "actual_by_currency": exchange.amounts(actual.by_currency),
                     "actual_unconverted": exchange.amounts(actual.unconverted)})
    return rows
