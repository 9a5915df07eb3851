"""The leaderboard: reps ranked by revenue, deals won, their own touches or quota attainment (the SQL:
adapters/reports/leaderboard.py)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch, names_of_reps
from ...adapters.reports.sql import Number
from ...domain import exchange, formulas
from ...domain.exchange import Converted
from ...domain.periods import DAY_S, Period, period_bounds, to_ts
from .. import currencies
from .common import Row
from .revenue import won_between, won_money


async def leaderboard(session: AsyncSession, f: Filters, metric: str, period: Period, moment: datetime
                      ) -> list[Row]:
    start, end = period_bounds(period, moment)
    extra: dict[str, Row] = {}
    if metric in ("revenue", "deals_won"):
        money = await currencies.setup(session, f.org_id)
        period_filters = Filters(org_id=f.org_id, from_ts=to_ts(start), to_ts=to_ts(end), pipeline_id=f.pipeline_id,
                                 group_by="rep")
        won = {rep: v for rep, v in (await won_money(session, period_filters, money)).items() if rep}
        # a win without a value counts 0 (never a null that sorts first)
        values: dict[str, Number] = {rep: (value.amount if metric == "revenue" else deals)
                                  for rep, (deals, value) in won.items()}
        if metric == "revenue":
            extra = {rep: {"currency": value.currency, "revenue_unconverted": exchange.amounts(value.unconverted)}
                     for rep, (_, value) in won.items()}
    elif metric == "activities":
        values = {r.rep: int(r.v or 0) for r in await fetch(session, queries.activities.own_touches(
            f.org_id, int(to_ts(start) // DAY_S), int(to_ts(end) // DAY_S)))}
    else:  # quota_attainment: each rep's quota of the period, compared in the quota's own currency
        found = await fetch(session, queries.leaderboard.rep_quotas(f.org_id, period, start.date()))
        won_in: dict[str, dict[str, Converted]] = {}
        values = {}
        for q in found:
            if q.currency not in won_in:
                won_in[q.currency] = await won_between(session, f.org_id, "rep", to_ts(start), to_ts(end),
                                                          q.currency)
            actual = won_in[q.currency].get(q.scope_id, Converted(q.currency))
            values[q.scope_id] = round(float(actual.amount * 100 / Decimal(q.amount)), 2)
            extra[q.scope_id] = {"currency": q.currency, "unconverted": exchange.amounts(actual.unconverted)}
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    if f.rep_id is not None:
        ranked_for = [(rep, v) for rep, v in ranked if rep == f.rep_id]
    else:
        ranked_for = ranked
    names = await names_of_reps(session, f.org_id, {rep for rep, _ in ranked_for})
    out = []
    for rep, value in ranked_for:
        rank = 1 + sum(1 for _, other in ranked if other > value)  # SQL RANK: ties share a rank
        shown = formulas.money(value) if metric == "revenue" else value
        out.append({"rank": rank, "rep_id": rep, "rep_name": names.get(rep), metric: shown, **extra.get(rep, {})})
    return out
