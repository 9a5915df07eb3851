"""Coaching: each rep's stays per stage against their team's (the SQL: adapters/reports/coaching.py; the
monthly rollups: adapters/rollups.py)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters import rollups
from ...adapters.orm import m_stay_months
from ...adapters.reports import Filters, fetch, names_of_reps
from ...adapters.reports.coaching import Stays
from ...adapters.reports.sql import Months, duration_months
from ...adapters.reports.stalled import StageP75
from ...domain import formulas
from ...domain.periods import days
from .common import Row, as_float, dialect_of


async def _coaching_stats(session: AsyncSession, f: Filters) -> tuple[list[Stays], list[Stays]]:
    """(per rep, team, stage and position; per team and stage): n, median, converted."""
    dialect = dialect_of(session)
    months = duration_months(dialect, f)
    if months is not None:
        rep_rows, team_rows, _ = stay_stats(await stay_groups(session, f, months, per_rep=True))
        return rep_rows, team_rows
    if dialect == "postgresql":  # both levels in one pass per team and stage
        both = [r for r in await fetch(session, queries.coaching.both_levels(f)) if r.n]
        return ([r for r in both if not r.team_level], [r for r in both if r.team_level])
    return (await fetch(session, queries.coaching.per_rep(f, dialect)),
            await fetch(session, queries.coaching.per_team(f, dialect)))


async def stay_groups(session: AsyncSession, f: Filters, months: Months, *, per_rep: bool) -> list[Any]:
    """m_stay_months summed per rep (with per_rep, else '' for all), team, stage and position, for `stay_stats`."""
    return await rollups.grouped_duration_rows(
        session, m_stay_months, ["m.owner_id" if per_rep else "''", "m.team_id", "m.stage_pipeline_id", "m.stage_id",
                                 "m.position"], ["m.stays", "m.converted"], f.org_id, months,
        pipeline_id=f.pipeline_id)


def stay_stats(found: list[tuple[Any, ...]], *, per_rep: bool = True
               ) -> tuple[list[Stays], list[Stays], list[StageP75]]:
    """Per rep, team, stage and position (with per_rep): n, converted and median (of the merged sorted
    durations, PostgreSQL's percentile_cont); per team and stage the same, and apart n and p75 (nearest rank);
    from m_stay_months summed per those (`stay_groups`). A team's figures merge its reps' groups."""
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
            rep_rows.append(Stays(team, pipeline, stage, stays, converted, median, owner, position))
    team_rows, team_p75 = [], []
    for (team, pipeline, stage), (stays, converted, packed_runs, runs) in teams.items():
        median, p75 = rollups.median_and_p75(rollups.merged(packed_runs, runs))
        team_rows.append(Stays(team, pipeline, stage, stays, converted, median, team_level=1))
        team_p75.append(StageP75(team, pipeline, stage, stays, p75))
    return rep_rows, team_rows, team_p75


async def coaching(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row], list[Row]]:
    rep_stats, team_rows = await _coaching_stats(session, f)
    # each team and stage's figures once (some 450), not once per rep row (some 4,500)
    team_view = {(t.team, t.pipeline_id, t.stage_id): (
        int(t.n), formulas.pct(int(t.converted), t.n), as_float(t.median), days(as_float(t.median)))
        for t in team_rows}
    names = await names_of_reps(session, f.org_id, {r.rep for r in rep_stats})
    rows: list[Row] = []
    unassigned: list[Row] = []  # nobody owned these at the stay's end: a signal, not a rep
    for r in sorted(rep_stats, key=lambda r: (r.rep, r.pipeline_id, r.position, r.stage_id)):
        if not r.rep:
            if f.rep_id is None:
                unassigned.append({"team_id": r.team or None, "pipeline_id": r.pipeline_id,
                                   "stage_id": r.stage_id, "exits": int(r.n)})
            continue
        if f.rep_id is not None and r.rep != f.rep_id:
            continue
        team_exits, t_conv, team_med, team_med_days = team_view[(r.team, r.pipeline_id, r.stage_id)]
        converted = int(r.converted)
        rep_conv = formulas.pct(converted, r.n)
        rep_med = as_float(r.median)
        rows.append({"rep_id": r.rep or None, "rep_name": names.get(r.rep), "team_id": r.team or None,
                     "pipeline_id": r.pipeline_id, "stage_id": r.stage_id, "position": r.position,
                     "exits": int(r.n), "converted": converted, "conversion_pct": rep_conv,
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
