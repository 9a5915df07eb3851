"""How long things take: the sales cycle, ask-to-decision and the first response to a new lead (the SQL:
adapters/reports/durations.py)."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters import rollups
from ...adapters.orm import m_created_months, m_decided_months
from ...adapters.reports import Filters, fetch
from ...adapters.reports.durations import Durations, ResponseTimes
from ...adapters.reports.sql import duration_months
from ...domain import formulas
from ...domain.periods import days, hours
from .common import Row, as_float, dialect_of, group_name, name_groups

NO_DURATIONS = Durations("", 0, None, None)  # a group with no durations of one kind
NO_RESPONSES = ResponseTimes("", 0, None, None)  # a group whose leads had no response


async def sales_cycle(session: AsyncSession, f: Filters) -> list[Row]:
    dialect = dialect_of(session)
    months = duration_months(dialect, f)
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_decided_months
        a, b = _decided_stats(await rollups.grouped_duration_rows(
            session, m_decided_months, [f.rollup_group()], [], f.org_id, months, pipeline_id=f.pipeline_id,
            owner_id=f.rep_id, packed=("cycle_durations", "ask_durations")))
    elif dialect == "postgresql":  # both from one scan of the period's decided leads
        found = await fetch(session, queries.durations.sales_cycle_one_pass(f))
        a = {r.g: Durations(r.g, r.c_n, r.c_mean, r.c_median) for r in found if r.c_n}
        b = {r.g: Durations(r.g, r.a_n, r.a_mean, r.a_median) for r in found if r.a_n}
    else:
        a = {r.g: r for r in await fetch(session, queries.durations.sales_cycles(f, dialect))}
        b = {r.g: r for r in await fetch(session, queries.durations.ask_to_decision(f, dialect))}
    rows = []
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key, NO_DURATIONS), b.get(key, NO_DURATIONS)
        rows.append({"group": group_name(key), "won": int(ra.n or 0),
                     "cycle_mean_days": days(as_float(ra.mean)), "cycle_median_days": days(as_float(ra.median)),
                     "decided_after_ask": int(rb.n or 0), "ask_to_decision_mean_days": days(as_float(rb.mean)),
                     "ask_to_decision_median_days": days(as_float(rb.median))})
    return await name_groups(session, f, rows)


def _decided_stats(found: list[Any]) -> tuple[dict[str, Durations], dict[str, Durations]]:
    """Per group: n, mean and median of the sales cycles and of the ask-to-decision durations, from
    m_decided_months summed per group (grouped_duration_rows); the median with PostgreSQL's percentile_cont
    arithmetic, the mean from the exactly rounded sum (math.fsum)."""
    cycle: dict[str, Durations] = {}
    ask: dict[str, Durations] = {}
    for group, cycles, asks, runs in found:
        for packed, out in ((cycles, cycle), (asks, ask)):
            ordered = rollups.merged([packed], runs)
            if len(ordered):
                out[group] = Durations(group, len(ordered), math.fsum(ordered) / len(ordered),
                                       rollups.median_and_p75(ordered)[0])
    return cycle, ask


async def response_time(session: AsyncSession, f: Filters) -> list[Row]:
    months = duration_months(dialect_of(session), f)
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
            rows.append({"group": group_name(key), "leads": leads, "responded": len(ordered),
                         "not_responded": leads - len(ordered),
                         "median_hours": hours(formulas.percentile_cont(ordered, 0.5)),
                         "p90_hours": hours(formulas.nearest_rank(ordered, 90, presorted=True))})
        return await name_groups(session, f, rows, default="rep")
    stats = {r.g: r for r in await fetch(session, queries.durations.response_times(f, dialect_of(session)))}
    for t in await fetch(session, queries.durations.responding_leads(f)):
        s = stats.get(t.g, NO_RESPONSES)
        responded = int(s.n or 0)
        rows.append({"group": group_name(t.g), "leads": int(t.leads), "responded": responded,
                     "not_responded": int(t.leads) - responded, "median_hours": hours(as_float(s.median)),
                     "p90_hours": hours(as_float(s.p90))})
    return await name_groups(session, f, rows, default="rep")
