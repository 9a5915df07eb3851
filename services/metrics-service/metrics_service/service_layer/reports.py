"""The reports: each answer made from the rows its SQL computes over the read models (never by looping over raw
events).

The SQL, its filters and each report's definition are in adapters/reports/ (one module per family of reports);
here the rows become the answer: groups named, percentages and money figures formatted, amounts converted into
the currency asked for, and the monthly rollups (adapters/rollups.py) read where a period is made of whole months.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..adapters import reports as queries
from ..adapters import rollups
from ..adapters.orm import m_cohort_months, m_created_months, m_decided_months, m_stay_months, m_won_months
from ..adapters.reports import COMMON, DEFINITIONS, Filters, fetch, fetch_quotas, names_of_reps
from ..adapters.reports.sql import GroupBy, Months, duration_months, rollup_serves
from ..domain import exchange, formulas
from ..domain.exchange import Converted
from ..domain.periods import (
    DAY_S,
    PERIODS,
    Period,
    days,
    elapsed_share,
    from_ts,
    hours,
    period_bounds,
    quarters_overlapping,
    to_ts,
)
from . import currencies

__all__ = ["COMMON", "DEFINITIONS", "Filters", "activities", "adoption", "coaching", "conversion", "deal_size",
           "forecast", "funnel", "handovers", "leaderboard", "production", "quota_attainment",
           "response_time", "sales_cycle", "stalled_deals", "win_rate", "won_between"]

Row = dict[str, Any]  # a report row, as the API answers it (entrypoints/responses.py types them)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _group(value: str | None) -> str | None:
    return value or None


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


async def _name_groups(session: AsyncSession, f: Filters, rows: list[Row], key: str = "group",
                       default: GroupBy = None) -> list[Row]:
    if (f.group_by or default) == "rep":
        names = await names_of_reps(session, f.org_id, {r[key] for r in rows if r.get(key)})
        for r in rows:
            r["rep_name"] = names.get(r[key]) if r.get(key) else None
    return rows


# ------------------------------------------------------------------ 1. funnel
async def funnel(session: AsyncSession, f: Filters) -> list[Row]:
    f = f.credited("first")
    months = duration_months(_dialect(session), f)
    reached = await fetch(session, queries.funnel.reached(f, months))
    times: dict[tuple[str, str, str], Row]
    if months is not None and queries.funnel.by_month_rollup(f, months):
        times = _cohort_stats(await rollups.grouped_duration_rows(
            session, m_cohort_months, [f.rollup_group(), "m.pipeline_id", "m.stage_id"], ["m.dropped_leads"],
            f.org_id, months, pipeline_id=f.pipeline_id, owner_id=f.rep_id))
    else:
        times = {(r["g"], r["pipeline_id"], r["stage_id"]): r
                 for r in await fetch(session, queries.funnel.stage_times(f, _dialect(session)))}
    out: list[Row] = []
    prev: int | None  # the previous stage's count in the group; None at a group's first stage
    prev_key, prev, first = None, 0, 0
    for r in reached:
        key = (r["g"], r["pipeline_id"])
        if key != prev_key:
            prev_key, prev, first = key, None, r["reached"]
        k3 = (r["g"], r["pipeline_id"], r["stage_id"])
        stat = times.get(k3, {})
        out.append({"group": _group(r["g"]), "pipeline_id": r["pipeline_id"], "stage_id": r["stage_id"],
                    "stage_name": r["name"], "position": r["position"], "reached": int(r["reached"]),
                    "conversion_pct": formulas.pct(r["reached"], prev) if prev is not None else None,
                    "conversion_from_first_pct": formulas.pct(r["reached"], first),
                    "drop_off": int(stat.get("drop_off") or 0), "median_days_in_stage": days(_f(stat.get("median")))})
        prev = r["reached"]
    return await _name_groups(session, f, out)


def _cohort_stats(found: list[Any]) -> dict[tuple[str, str, str], Row]:
    """(group, pipeline, stage) → median (merged sorted durations) and drop_off from m_cohort_months rows
    summed per group, pipeline and stage (grouped_duration_rows)."""
    return {(group, pipeline, stage): {
        "drop_off": dropped, "median": rollups.median_and_p75(rollups.merged([durations], runs))[0]}
        for group, pipeline, stage, dropped, durations, runs in found}


# ------------------------------------------------------------------ 2. win rate
async def win_rate(session: AsyncSession, f: Filters) -> list[Row]:
    rows = [{"group": _group(r["g"]), "won": int(r["won"]), "lost": int(r["lost"]),
             "win_rate_pct": formulas.win_rate(int(r["won"]), int(r["lost"]))}
            for r in await fetch(session, queries.outcomes.win_rate(f))]
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 3. deal size
async def deal_size(session: AsyncSession, f: Filters) -> list[Row]:
    months = duration_months(_dialect(session), f)
    found: list[Row]
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_won_months
        per_group: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
        for owner, team, currency, _, won_values in await rollups.duration_rows(
                session, m_won_months, ["owner_id", "team_id", "currency", "deals", "won_values"], f.org_id, months,
                pipeline_id=f.pipeline_id, owner_id=f.rep_id):
            per_group[({None: "", "rep": owner, "team": team}[f.group_by], currency)] += won_values
        found = [{"g": g, "currency": currency, "n": len(values), "total": sum(values, Decimal(0)),
                  "mean": sum(values, Decimal(0)) / len(values), "median": formulas.median(values)}
                 for (g, currency), values in sorted(per_group.items())]
    else:
        found = await fetch(session, queries.outcomes.deal_size(f))
    rows = [{"group": _group(r["g"]), "currency": r["currency"] or None, "deals": int(r["n"]),
             "total": formulas.money(r["total"]), "mean": formulas.money(r["mean"]),
             "median": formulas.money(r["median"])} for r in found]
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 4. sales cycle and ask-to-decision
async def sales_cycle(session: AsyncSession, f: Filters) -> list[Row]:
    dialect = _dialect(session)
    months = duration_months(dialect, f)
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_decided_months
        a, b = _decided_stats(await rollups.grouped_duration_rows(
            session, m_decided_months, [f.rollup_group()], [], f.org_id, months, pipeline_id=f.pipeline_id,
            owner_id=f.rep_id, packed=("cycle_durations", "ask_durations")))
    elif dialect == "postgresql":  # both from one scan of the period's decided leads
        found = await fetch(session, queries.durations.sales_cycle_one_pass(f))
        a = {r["g"]: {"n": r["c_n"], "mean": r["c_mean"], "median": r["c_median"]} for r in found if r["c_n"]}
        b = {r["g"]: {"n": r["a_n"], "mean": r["a_mean"], "median": r["a_median"]} for r in found if r["a_n"]}
    else:
        a = {r["g"]: r for r in await fetch(session, queries.durations.sales_cycles(f, dialect))}
        b = {r["g"]: r for r in await fetch(session, queries.durations.ask_to_decision(f, dialect))}
    rows = []
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key, {}), b.get(key, {})
        rows.append({"group": _group(key), "won": int(ra.get("n") or 0),
                     "cycle_mean_days": days(_f(ra.get("mean"))), "cycle_median_days": days(_f(ra.get("median"))),
                     "decided_after_ask": int(rb.get("n") or 0),
                     "ask_to_decision_mean_days": days(_f(rb.get("mean"))),
                     "ask_to_decision_median_days": days(_f(rb.get("median")))})
    return await _name_groups(session, f, rows)


def _decided_stats(found: list[Any]) -> tuple[dict[str, Row], dict[str, Row]]:
    """Per group: n, mean and median of the sales cycles and of the ask-to-decision durations, from
    m_decided_months summed per group (grouped_duration_rows); the median with PostgreSQL's percentile_cont
    arithmetic, the mean from the exactly rounded sum (math.fsum)."""
    cycle: dict[str, Row] = {}
    ask: dict[str, Row] = {}
    for group, cycles, asks, runs in found:
        for packed, out in ((cycles, cycle), (asks, ask)):
            ordered = rollups.merged([packed], runs)
            if len(ordered):
                out[group] = {"n": len(ordered), "mean": math.fsum(ordered) / len(ordered),
                              "median": rollups.median_and_p75(ordered)[0]}
    return cycle, ask


# ------------------------------------------------------------------ 5. response time
async def response_time(session: AsyncSession, f: Filters) -> list[Row]:
    months = duration_months(_dialect(session), f)
    rows: list[Row] = []
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_created_months
        per_group: dict[str, list[Any]] = defaultdict(lambda: [0, []])
        for owner, team, leads, packed_durations in await rollups.duration_rows(
                session, m_created_months, ["owner_id", "team_id", "leads", "durations"], f.org_id, months,
                pipeline_id=f.pipeline_id, owner_id=f.rep_id):
            if not owner:  # leads nobody owned at creation: no one to respond
                continue
            measures = per_group[team if f.group_by == "team" else owner]
            measures[0] += leads
            measures[1].append(packed_durations)
        for key in sorted(per_group):
            leads, packed = per_group[key]
            ordered = rollups.merged(packed).tolist()
            rows.append({"group": _group(key), "leads": leads, "responded": len(ordered),
                         "not_responded": leads - len(ordered),
                         "median_hours": hours(formulas.percentile_cont(ordered, 0.5)),
                         "p90_hours": hours(formulas.nearest_rank(ordered, 90, presorted=True))})
        return await _name_groups(session, f, rows, default="rep")
    stats = {r["g"]: r for r in await fetch(session, queries.durations.response_times(f, _dialect(session)))}
    for t in await fetch(session, queries.durations.responding_leads(f)):
        s = stats.get(t["g"], {})
        responded = int(s.get("n") or 0)
        rows.append({"group": _group(t["g"]), "leads": int(t["leads"]), "responded": responded,
                     "not_responded": int(t["leads"]) - responded, "median_hours": hours(_f(s.get("median"))),
                     "p90_hours": hours(_f(s.get("p90")))})
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 6. seed conversion rates
async def conversion(session: AsyncSession, f: Filters) -> list[Row]:
    rows = [{"group": _group(r["g"]), "created": int(r["created"]), "qualified": int(r["qualified"]),
             "proposals": int(r["proposals"]), "won": int(r["won"]),
             "qualification_rate_pct": formulas.pct(r["qualified"], r["created"]),
             "proposal_rate_pct": formulas.pct(r["proposals"], r["created"]),
             "close_rate_pct": formulas.pct(r["won"], r["created"])}
            for r in await fetch(session, queries.outcomes.conversion(f))]
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 7. activity totals
async def activities(session: AsyncSession, f: Filters) -> list[Row]:
    rows: list[Row] = []
    if f.pipeline_id is not None:
        for r in await fetch(session, queries.activities.pipeline_totals(f)):
            row: Row = {"group": _group(r["g"]), **{c: int(r[c] or 0) for c in queries.activities.KINDS}}
            row.update(records_entered=None, records_updated=None,  # not known per pipeline
                       talk_minutes=round(int(r["talk_seconds"] or 0) / 60.0, 2))
            rows.append(row)
        return await _name_groups(session, f, rows, default="rep")
    for r in await fetch(session, queries.activities.daily_totals(f)):
        row = {"group": _group(r["g"])}
        row.update({c: int(r[c] or 0) for c in queries.activities.COLUMNS if c != "talk_seconds"})
        row["talk_minutes"] = round(int(r["talk_seconds"] or 0) / 60.0, 2)
        rows.append(row)
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 8. production
def money_fields(value: Converted, name: str) -> Row:
    """A converted figure as report fields: `name` (in `currency`), the original amounts per currency, and
    what could not be converted (never inside `name`)."""
    return {name: formulas.money(value.amount), "currency": value.currency,
            f"{name}_by_currency": exchange.amounts(value.by_currency),
            f"{name}_unconverted": exchange.amounts(value.unconverted)}


async def production(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row]]:
    months = duration_months(_dialect(session), f)
    by_month = months is not None and f.group_by in (None, "rep", "team")  # whole months: m_created_months
    created = {r["g"]: int(r["n"]) for r in await fetch(session, queries.revenue.leads_created(f, months if by_month
                                                                                          else None))}
    money = await currencies.setup(session, f.org_id)
    won = await won_money(session, f, money)
    rows = []
    for k in sorted(set(created) | set(won)):
        deals, value = won.get(k, (0, Converted(money.currency)))
        rows.append({"group": _group(k), "leads_generated": created.get(k, 0), "deals_won": deals,
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
    return await _name_groups(session, f, rows), quarters


async def quota_reps(session: AsyncSession, org_id: str, start: date, end: date, rep_id: str | None = None) -> int:
    """Reps carrying a quota for a period that overlaps [start, end) (month, quarter or year quotas)."""
    reps = set()
    for q in await fetch(session, queries.revenue.rep_quotas_begun_before(org_id, end, rep_id)):
        begun = as_day(q["period_start"])
        _, ends = period_bounds(q["period"], datetime(begun.year, begun.month, begun.day))
        if ends.date() > start:
            reps.add(q["scope_id"])
    return len(reps)


def as_day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def won_money(session: AsyncSession, f: Filters, money: currencies.Setup, target: str | None = None
                    ) -> dict[str, tuple[int, Converted]]:
    """Per group: deals won and their value converted into `target` (default: the reporting currency), for
    wins in [from, to) credited to the owner at the win. Each won value (LeadWon's, else the lead's) is
    converted at the rate in force on the day of the win. Whole months whose wins are all in the target
    currency are read from m_closed_months; otherwise the wins are summed per currency and day."""
    target = target or money.currency
    f = f.credited("credit")
    dialect = _dialect(session)
    months = duration_months(dialect, f)
    out: dict[str, tuple[int, Converted]] = {}
    if months is not None and f.group_by in (None, "rep", "team") and not await fetch(
            session, queries.revenue.foreign_wins(f, months, target)):
        for r in await fetch(session, queries.revenue.won_by_month(f, months)):
            value = Decimal(r["revenue"] or 0)
            out[r["g"]] = (int(r["n"]), Converted(target, value, {target: value} if value else {}))
        return out
    for r in await fetch(session, queries.revenue.won_by_currency_and_day(f, dialect, target)):
        deals, converted = out.get(r["g"], (0, Converted(target)))
        converted.add(money.rates, r["currency"], r["amount"], exchange.day_of(r["day"]))
        out[r["g"]] = (deals + int(r["n"]), converted)
    return out


async def won_between(session: AsyncSession, org_id: str, scope: str, start_ts: float, end_ts: float,
                      currency: str | None = None) -> dict[str, Converted]:
    """Won value per scope id ('' for the org) for wins in [start, end), credited to the owner at the win,
    converted into `currency` (default: the reporting currency) at each win's date."""
    f = Filters(org_id=org_id, from_ts=start_ts, to_ts=end_ts, group_by={"org": None, "team": "team",
                                                                         "rep": "rep"}[scope])
    money = await currencies.setup(session, org_id)
    return {g: value for g, (_, value) in (await won_money(session, f, money, currency)).items()}


# ------------------------------------------------------------------ 9. forecast
async def forecast(session: AsyncSession, f: Filters, period: Period, moment: datetime) -> list[Row]:
    f = f.credited("credit")
    money = await currencies.setup(session, f.org_id)
    start, end = period_bounds(period, moment)
    today = (f.now or moment).date()
    won = await won_money(session, replace(f, from_ts=to_ts(start), to_ts=to_ts(end)), money)
    history = {r["g"]: r for r in await fetch(session, queries.forecast.history(
        f, to_ts(start), to_ts(end), by_month=rollup_serves(_dialect(session), f)))}
    pipeline: dict[str, tuple[Converted, Converted]] = {}
    for r in await fetch(session, queries.forecast.open_pipeline(f, to_ts(start), to_ts(end))):
        open_value, weighted = pipeline.setdefault(r["g"], (Converted(money.currency), Converted(money.currency)))
        open_value.add(money.rates, r["currency"], r["open_pipeline"], today)
        weighted.add(money.rates, r["currency"], r["weighted_open"], today)
    rows = []
    for g in sorted(set(won) | set(history) | set(pipeline)):
        won_so_far = won.get(g, (0, Converted(money.currency)))[1]
        open_value, weighted = pipeline.get(g, (Converted(money.currency), Converted(money.currency)))
        hist = history.get(g, {})
        hist_won, hist_lost = int(hist.get("hist_won") or 0), int(hist.get("hist_lost") or 0)
        rate = Decimal(hist_won) / Decimal(hist_won + hist_lost) if hist_won + hist_lost else Decimal(0)
        unconverted = Converted(money.currency)
        for part in (won_so_far, open_value):
            unconverted.merge(Converted(money.currency, unconverted=part.unconverted))
        rows.append({"group": _group(g), "period": period, "period_start": start.isoformat(),
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
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 10. quota attainment
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


# ------------------------------------------------------------------ 11. adoption
async def adoption(session: AsyncSession, f: Filters) -> list[Row]:
    coverage = {r["g"]: r for r in await fetch(session, queries.adoption.coverage(f, to_ts(f.now)))}
    compliance = {r["g"]: r for r in await fetch(session, queries.adoption.compliance(
        f, by_month=rollup_serves(_dialect(session), f)))}
    rows = []
    for key in sorted(set(coverage) | set(compliance)):
        c, k = coverage.get(key, {}), compliance.get(key, {})
        rows.append({"group": _group(key), "open_leads": int(c.get("open_leads") or 0),
                     "covered": int(c.get("covered") or 0),
                     "coverage_pct": formulas.pct(c.get("covered") or 0, c.get("open_leads")),
                     "stage_exits": int(k.get("exits") or 0), "compliant_exits": int(k.get("compliant") or 0),
                     "compliance_pct": formulas.pct(k.get("compliant") or 0, k.get("exits"))})
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 12. coaching
async def _coaching_stats(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row]]:
    """(per rep, team, stage and position; per team and stage): n, median, converted."""
    dialect = _dialect(session)
    months = duration_months(dialect, f)
    if months is not None:
        return _stay_stats(await _stay_groups(session, f, months, per_rep=True))
    if dialect == "postgresql":  # both levels in one pass per team and stage
        both = [r for r in await fetch(session, queries.coaching.both_levels(f)) if r["n"]]
        return ([r for r in both if not r["team_level"]], [r for r in both if r["team_level"]])
    return (await fetch(session, queries.coaching.per_rep(f, dialect)),
            await fetch(session, queries.coaching.per_team(f, dialect)))


async def _stay_groups(session: AsyncSession, f: Filters, months: Months, *, per_rep: bool) -> list[Any]:
    """m_stay_months summed per rep (with per_rep, else '' for all), team, stage and position, for `_stay_stats`."""
    return await rollups.grouped_duration_rows(
        session, m_stay_months, ["m.owner_id" if per_rep else "''", "m.team_id", "m.stage_pipeline_id", "m.stage_id",
                                 "m.position"], ["m.stays", "m.converted"], f.org_id, months,
        pipeline_id=f.pipeline_id)


def _stay_stats(found: list[tuple[Any, ...]], *, per_rep: bool = True) -> tuple[list[Row], list[Row]]:
    """Per rep, team, stage and position (with per_rep): n, converted and median (of the merged sorted
    durations, PostgreSQL's percentile_cont); per team and stage the same and p75 (nearest rank); from
    m_stay_months summed per those (`_stay_groups`). A team's figures merge its reps' groups."""
    teams: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, [], 0])
    rep_rows = []
    for owner, team, pipeline, stage, position, stays, converted, packed, runs in found:
        measures = teams[(team, pipeline, stage)]
        measures[0] += stays
        measures[1] += converted
        measures[2].append(packed)
        measures[3] += runs
        if per_rep:
            median, _ = rollups.median_and_p75(rollups.merged([packed], runs))
            rep_rows.append({"rep": owner, "team": team, "pipeline_id": pipeline, "stage_id": stage,
                             "position": position, "n": stays, "converted": converted, "median": median})
    team_rows = []
    for (team, pipeline, stage), (stays, converted, packed_runs, runs) in teams.items():
        median, p75 = rollups.median_and_p75(rollups.merged(packed_runs, runs))
        team_rows.append({"team": team, "pipeline_id": pipeline, "stage_id": stage, "n": stays,
                          "converted": converted, "median": median, "p75": p75})
    return rep_rows, team_rows


async def coaching(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row], list[Row]]:
    rep_stats, team_rows = await _coaching_stats(session, f)
    # each team and stage's figures once (some 450), not once per rep row (some 4,500)
    team_view = {(t["team"], t["pipeline_id"], t["stage_id"]): (
        int(t["n"]), formulas.pct(int(t["converted"]), t["n"]), _f(t["median"]), days(_f(t["median"])))
        for t in team_rows}
    names = await names_of_reps(session, f.org_id, {r["rep"] for r in rep_stats})
    rows = []
    unassigned: list[Row] = []  # nobody owned these at the stay's end: a signal, not a rep
    for r in sorted(rep_stats, key=lambda r: (r["rep"], r["pipeline_id"], r["position"], r["stage_id"])):
        if not r["rep"]:
            if f.rep_id is None:
                unassigned.append({"team_id": r["team"] or None, "pipeline_id": r["pipeline_id"],
                                   "stage_id": r["stage_id"], "exits": int(r["n"])})
            continue
        if f.rep_id is not None and r["rep"] != f.rep_id:
            continue
        team_exits, t_conv, team_med, team_med_days = team_view[(r["team"], r["pipeline_id"], r["stage_id"])]
        converted = int(r["converted"])
        rep_conv = formulas.pct(converted, r["n"])
        rep_med = _f(r["median"])
        rows.append({"rep_id": r["rep"] or None, "rep_name": names.get(r["rep"]), "team_id": r["team"] or None,
                     "pipeline_id": r["pipeline_id"], "stage_id": r["stage_id"], "position": r["position"],
                     "exits": int(r["n"]), "converted": converted, "conversion_pct": rep_conv,
                     "team_exits": team_exits, "team_conversion_pct": t_conv,
                     "conversion_vs_team_pts": (round(rep_conv - t_conv, 2)
                                                if rep_conv is not None and t_conv is not None else None),
                     "median_days_in_stage": days(rep_med), "team_median_days_in_stage": team_med_days,
                     "median_vs_team_ratio": (round(rep_med / team_med, 4) if rep_med is not None and team_med
                                              else None)})
    # stalls_most: the stage where the rep is slowest against the team, only where the rep is slower (ratio > 1)
    stalls: dict[str, Row | None] = {row["rep_id"]: None for row in rows}
    for row in rows:
        ratio = row["median_vs_team_ratio"]
        best = stalls[row["rep_id"]]
        if ratio is not None and ratio > 1 and (best is None or ratio > best["median_vs_team_ratio"]):
            stalls[row["rep_id"]] = row
    names_of = {row["rep_id"]: row["rep_name"] for row in rows}
    stalls_most = [{"rep_id": k, "rep_name": names_of[k], "slower_than_team": v is not None,
                    "pipeline_id": v["pipeline_id"] if v else None, "stage_id": v["stage_id"] if v else None,
                    "median_days_in_stage": v["median_days_in_stage"] if v else None,
                    "team_median_days_in_stage": v["team_median_days_in_stage"] if v else None,
                    "median_vs_team_ratio": v["median_vs_team_ratio"] if v else None}
                   for k, v in sorted(stalls.items())]
    return rows, stalls_most, unassigned


# ------------------------------------------------------------------ 13. stalled deals
MIN_BASELINE_STAYS = 5  # fewer completed stays than this are no baseline: one quick stay would be the threshold
TeamStage = tuple[str, str, str]  # (team, pipeline, stage)


async def _team_stage_p75(session: AsyncSession, f: Filters) -> list[Row]:
    """Per team and stage, over the ended stays entered in [from, to): n and the 75th percentile (nearest rank)."""
    dialect = _dialect(session)
    months = duration_months(dialect, f)
    if months is not None:  # from m_stay_months
        return _stay_stats(await _stay_groups(session, f, months, per_rep=False), per_rep=False)[1]
    found = await fetch(session, queries.stalled.team_stage_p75(f, dialect))
    return [r for r in found if r["n"]] if dialect == "postgresql" else found


async def _trailing_p75(session: AsyncSession, f: Filters, key: TeamStage, end_ts: float,
                        whole_org: bool) -> tuple[int, float | None]:
    """n and p75 of the ended stays of one stage (the team's, or every team's) entered in the trailing days
    before `end_ts`."""
    stays = queries.stalled.trailing_stays(f, key, end_ts, whole_org=whole_org)
    values = sorted(r["x"] for r in await fetch(session, stays))
    return len(values), formulas.nearest_rank(values, 75, presorted=True)


async def _waiting_without_baseline(session: AsyncSession, f: Filters, period: set[TeamStage]) -> set[TeamStage]:
    """The (team, pipeline, stage) where open leads with an owner wait and the period gives no baseline: on
    PostgreSQL probed per candidate (every team of the org's reps or of the period's stays, and no team, times
    every stage) with one index lookup each, instead of reading every open lead."""
    if _dialect(session) != "postgresql":
        return {(r["team"], r["pipeline_id"], r["stage_id"])
                for r in await fetch(session, queries.stalled.waiting_stages(f))} - period
    teams = ({r["team_id"] or "" for r in await fetch(session, queries.stalled.rep_teams(f.org_id))}
             | {k[0] for k in period} | {""})
    stages = [(r["pipeline_id"], r["stage_id"]) for r in await fetch(session, queries.stalled.stages(f.org_id))]
    candidates = sorted((t, p, st) for t in teams for p, st in stages if (t, p, st) not in period)
    if not candidates:
        return set()
    return {(r["team"], r["p"], r["s"]) for r in await fetch(session, queries.stalled.waiting_among(f, candidates))}


async def stalled_thresholds(session: AsyncSession, f: Filters) -> dict[TeamStage, Row]:
    """(team, pipeline, stage) → {p75, baseline, baseline_stays} for the team-stages where open leads wait
    (those `queries.stalled.lead_filters` keeps).

    Baseline, the first that has at least MIN_BASELINE_STAYS completed stays: the team's stays entered in
    [from, to) ("team_period"); the team's stays entered in the trailing days before `to` (or now)
    ("team_trailing_year"); every team's stays of the stage in that window ("org_trailing_year"). None: no
    baseline, the leads are not judged."""
    out = {}
    for r in await _team_stage_p75(session, f):
        key = (r["team"], r["pipeline_id"], r["stage_id"])
        if int(r["n"]) >= MIN_BASELINE_STAYS and r["p75"] is not None:
            out[key] = {"p75": float(r["p75"]), "baseline": "team_period", "baseline_stays": int(r["n"])}
    waiting = await _waiting_without_baseline(session, f, set(out))
    end_ts = f.to_ts if f.to_ts is not None else to_ts(f.now)
    for key in sorted(waiting - set(out)):
        for whole_org, name in ((False, "team_trailing_year"), (True, "org_trailing_year")):
            # arg-type: end_ts is never None, as a report's filters always carry `now` (entrypoints/routes.py)
            n, p75 = await _trailing_p75(session, f, key, end_ts, whole_org)  # type: ignore[arg-type]
            if n >= MIN_BASELINE_STAYS and p75 is not None:
                out[key] = {"p75": float(p75), "baseline": name, "baseline_stays": n}
                break
    return out


async def stalled_deals(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row]]:
    now_ts = to_ts(f.now)
    thresholds = await stalled_thresholds(session, f)
    if _dialect(session) == "postgresql":
        p75 = {k: v["p75"] for k, v in thresholds.items()}
        found = await fetch(session, queries.stalled.most_stalled(f, now_ts, p75))
    else:  # the embedded mode's few leads, judged here
        found = []
        for r in await fetch(session, queries.stalled.open_with_owner(f, now_ts)):
            limit = thresholds.get((r["team_id"] or "", r["pipeline_id"], r["stage_id"]))
            if limit is not None and r["age"] > limit["p75"]:
                found.append({**r, "p75": limit["p75"]})
        found.sort(key=lambda r: (-(r["age"] - r["p75"]), r["lead_id"]))
        found = found[:queries.stalled.LIMIT]
    names = await names_of_reps(session, f.org_id, {r["owner_id"] for r in found if r["owner_id"]})
    rows = []
    for r in found:
        basis = thresholds[(r["team_id"] or "", r["pipeline_id"], r["stage_id"])]
        rows.append({"lead_id": r["lead_id"], "rep_id": r["owner_id"], "rep_name": names.get(r["owner_id"]),
                     "team_id": r["team_id"], "pipeline_id": r["pipeline_id"], "stage_id": r["stage_id"],
                     "days_in_stage": days(_f(r["age"])), "team_p75_days": days(_f(r["p75"])),
                     # operator: a stalled row has an age above its p75, so neither is None
                     "days_over": days(_f(r["age"]) - _f(r["p75"])),  # type: ignore[operator]
                     "baseline": basis["baseline"], "baseline_stays": basis["baseline_stays"]})
    unassigned: list[Row] = []
    if f.rep_id is None:  # open leads nobody owns: their own signal, not compared with anyone
        unassigned = [{"lead_id": r["lead_id"], "team_id": r["team_id"], "pipeline_id": r["pipeline_id"],
                       "stage_id": r["stage_id"], "days_in_stage": days(_f(r["age"]))}
                      for r in await fetch(session, queries.stalled.unowned(f, now_ts))]
    return rows, unassigned


# ------------------------------------------------------------------ 14. hand-overs (account management's view)
async def handovers(session: AsyncSession, f: Filters) -> list[Row]:
    """Won leads now owned by someone other than the rep credited with the win, per current owner (or team)."""
    rows = [{"group": _group(r["g"]), "currency": r["currency"] or None, "customers": int(r["customers"]),
             "closers": int(r["closers"]), "won_value": formulas.money(r["won_value"])}
            for r in await fetch(session, queries.outcomes.handovers(f))]
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 15. leaderboard
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
        values: dict[str, Any] = {rep: (value.amount if metric == "revenue" else deals)
                                  for rep, (deals, value) in won.items()}
        if metric == "revenue":
            extra = {rep: {"currency": value.currency, "revenue_unconverted": exchange.amounts(value.unconverted)}
                     for rep, (_, value) in won.items()}
    elif metric == "activities":
        values = {r["rep"]: int(r["v"] or 0) for r in await fetch(session, queries.activities.own_touches(
            f.org_id, int(to_ts(start) // DAY_S), int(to_ts(end) // DAY_S)))}
    else:  # quota_attainment: each rep's quota of the period, compared in the quota's own currency
        found = await fetch(session, queries.leaderboard.rep_quotas(f.org_id, period, start.date()))
        won_in: dict[str, dict[str, Converted]] = {}
        values = {}
        for q in found:
            if q["currency"] not in won_in:
                won_in[q["currency"]] = await won_between(session, f.org_id, "rep", to_ts(start), to_ts(end),
                                                          q["currency"])
            actual = won_in[q["currency"]].get(q["scope_id"], Converted(q["currency"]))
            values[q["scope_id"]] = round(float(actual.amount * 100 / Decimal(q["amount"])), 2)
            extra[q["scope_id"]] = {"currency": q["currency"], "unconverted": exchange.amounts(actual.unconverted)}
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
