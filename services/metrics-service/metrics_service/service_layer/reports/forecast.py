"""The forecast of a period: won so far, the open pipeline, weighted by stage and by history (the SQL:
adapters/reports/forecast.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch
from ...adapters.reports.forecast import History
from ...adapters.reports.sql import rollup_serves
from ...domain import exchange, formulas
from ...domain.exchange import Converted
from ...domain.periods import Period, period_bounds, to_ts
from .. import currencies
from .common import Row, dialect_of, group_name, name_groups
from .revenue import won_money

NO_HISTORY = History("", 0, 0)  # a group with no lead closed before the period


async def forecast(session: AsyncSession, f: Filters, period: Period, moment: datetime) -> list[Row]:
    f = f.credited("credit")
    money = await currencies.setup(session, f.org_id)
    start, end = period_bounds(period, moment)
    today = (f.now or moment).date()
    won = await won_money(session, replace(f, from_ts=to_ts(start), to_ts=to_ts(end)), money)
    history = {r.g: r for r in await fetch(session, queries.forecast.history(
        f, to_ts(start), to_ts(end), by_month=rollup_serves(dialect_of(session), f)))}
    pipeline: dict[str, tuple[Converted, Converted]] = {}
    for r in await fetch(session, queries.forecast.open_pipeline(f, to_ts(start), to_ts(end))):
        open_value, weighted = pipeline.setdefault(r.g, (Converted(money.currency), Converted(money.currency)))
        open_value.add(money.rates, r.currency, r.open_pipeline, today)
        weighted.add(money.rates, r.currency, r.weighted_open, today)
    rows = []
    for g in sorted(set(won) | set(history) | set(pipeline)):
        won_so_far = won.get(g, (0, Converted(money.currency)))[1]
        open_value, weighted = pipeline.get(g, (Converted(money.currency), Converted(money.currency)))
        hist = history.get(g, NO_HISTORY)
        hist_won, hist_lost = int(hist.hist_won or 0), int(hist.hist_lost or 0)
        rate = Decimal(hist_won) / Decimal(hist_won + hist_lost) if hist_won + hist_lost else Decimal(0)
        unconverted = Converted(money.currency)
        for part in (won_so_far, open_value):
            unconverted.merge(Converted(money.currency, unconverted=part.unconverted))
        rows.append({"group": group_name(g), "period": period, "period_start": start.isoformat(),
                     "period_end": end.isoformat(), "currency": money.currency,
                     "won_so_far": formulas.money(won_so_far.amount),
                     "open_pipeline": formulas.money(open_value.amount),
                     "weighted_by_stage": formulas.money(won_so_far.amount + weighted.amount),
                     "historical_win_rate_pct": formulas.pct(hist_won, hist_won + hist_lost) or 0.0,
                     "weighted_by_history": formulas.money(won_so_far.amount + open_value.amount * rate),
                     "best_case": formulas.money(won_so_far.amount + open_value.amount),
                     "won_by_currency": exchange.amounts(won_so_far.by_currency),
                     "open_by_currency": exchange.amounts(open_value.by_currency),
                     "unconverted": exchange.amounts(unconverted.unconverted)})
    return await name_groups(session, f, rows)
