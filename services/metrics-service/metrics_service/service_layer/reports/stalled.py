"""Stalled deals: open leads in a stage for longer than their team's 75th percentile of stays there (the SQL:
adapters/reports/stalled.py)."""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch, names_of_reps
from ...adapters.reports.sql import duration_months
from ...adapters.reports.stalled import OpenLead, StageP75
from ...domain import formulas
from ...domain.periods import days, to_ts
from .coaching import stay_groups, stay_stats
from .common import Row, as_float, dialect_of

MIN_BASELINE_STAYS = 5  # fewer completed stays than this are no baseline: one quick stay would be the threshold
TeamStage = tuple[str, str, str]  # (team, pipeline, stage)


class Threshold(NamedTuple):
    """How long an open lead may stay in its stage before it is stalled (seconds), and the stays it is from."""

    p75: float
    baseline: str  # team_period, team_trailing_year or org_trailing_year
    baseline_stays: int


async def _team_stage_p75(session: AsyncSession, f: Filters) -> list[StageP75]:
    """Per team and stage, over the ended stays entered in [from, to): n and the 75th percentile (nearest rank)."""
    dialect = dialect_of(session)
    months = duration_months(dialect, f)
    if months is not None:  # from m_stay_months
        return stay_stats(await stay_groups(session, f, months, per_rep=False), per_rep=False)[2]
    found = await fetch(session, queries.stalled.team_stage_p75(f, dialect))
    return [r for r in found if r.n] if dialect == "postgresql" else found


async def _trailing_p75(session: AsyncSession, f: Filters, key: TeamStage, end_ts: float,
                        whole_org: bool) -> tuple[int, float | None]:
    """n and p75 of the ended stays of one stage (the team's, or every team's) entered in the trailing days
    before `end_ts`."""
    stays = queries.stalled.trailing_stays(f, key, end_ts, whole_org=whole_org)
    values = sorted(r.x for r in await fetch(session, stays))
    return len(values), formulas.nearest_rank(values, 75, presorted=True)


async def _waiting_without_baseline(session: AsyncSession, f: Filters, period: set[TeamStage]) -> set[TeamStage]:
    """The (team, pipeline, stage) where open leads with an owner wait and the period gives no baseline: on
    PostgreSQL probed per candidate (every team of the org's reps or of the period's stays, and no team, times
    every stage) with one index lookup each, instead of reading every open lead."""
    if dialect_of(session) != "postgresql":
        return {(r.team, r.pipeline_id, r.stage_id)
                for r in await fetch(session, queries.stalled.waiting_stages(f))} - period
    teams = ({r.team_id or "" for r in await fetch(session, queries.stalled.rep_teams(f.org_id))}
             | {k[0] for k in period} | {""})
    stages = [(r.pipeline_id, r.stage_id) for r in await fetch(session, queries.stalled.stages(f.org_id))]
    candidates = sorted((t, p, st) for t in teams for p, st in stages if (t, p, st) not in period)
    if not candidates:
        return set()
    return {(r.team, r.p, r.s) for r in await fetch(session, queries.stalled.waiting_among(f, candidates))}


async def stalled_thresholds(session: AsyncSession, f: Filters) -> dict[TeamStage, Threshold]:
    """(team, pipeline, stage) → its threshold for the team-stages where open leads wait
    (those `queries.stalled.lead_filters` keeps).

    Baseline, the first that has at least MIN_BASELINE_STAYS completed stays: the team's stays entered in
    [from, to) ("team_period"); the team's stays entered in the trailing days before `to` (or now)
    ("team_trailing_year"); every team's stays of the stage in that window ("org_trailing_year"). None: no
    baseline, the leads are not judged."""
    out = {}
    for r in await _team_stage_p75(session, f):
        key = (r.team, r.pipeline_id, r.stage_id)
        if int(r.n) >= MIN_BASELINE_STAYS and r.p75 is not None:
            out[key] = Threshold(float(r.p75), "team_period", int(r.n))
    waiting = await _waiting_without_baseline(session, f, set(out))
    end_ts = f.to_ts if f.to_ts is not None else to_ts(f.now)
    for key in sorted(waiting - set(out)):
        for whole_org, name in ((False, "team_trailing_year"), (True, "org_trailing_year")):
            # arg-type: end_ts is never None, as a report's filters always carry `now` (entrypoints/routes.py)
            n, p75 = await _trailing_p75(session, f, key, end_ts, whole_org)  # type: ignore[arg-type]
            if n >= MIN_BASELINE_STAYS and p75 is not None:
                out[key] = Threshold(float(p75), name, n)
                break
    return out


async def stalled_deals(session: AsyncSession, f: Filters) -> tuple[list[Row], list[Row]]:
    now_ts = to_ts(f.now)
    thresholds = await stalled_thresholds(session, f)
    if dialect_of(session) == "postgresql":
        p75 = {k: v.p75 for k, v in thresholds.items()}
        found = await fetch(session, queries.stalled.most_stalled(f, now_ts, p75))
    else:  # the embedded mode's few leads, judged here
        over: list[tuple[float, OpenLead]] = []  # (seconds over the threshold, the lead)
        for r in await fetch(session, queries.stalled.open_with_owner(f, now_ts)):
            limit = thresholds.get((r.team_id or "", r.pipeline_id, r.stage_id))
            if limit is not None and r.age > limit.p75:
                over.append((r.age - limit.p75, r._replace(p75=limit.p75)))
        over.sort(key=lambda o: (-o[0], o[1].lead_id))
        found = [r for _, r in over[:queries.stalled.LIMIT]]
    names = await names_of_reps(session, f.org_id, {r.owner_id for r in found if r.owner_id})
    rows = []
    for r in found:
        basis = thresholds[(r.team_id or "", r.pipeline_id, r.stage_id)]
        rows.append({"lead_id": r.lead_id, "rep_id": r.owner_id, "rep_name": names.get(r.owner_id),
                     "team_id": r.team_id, "pipeline_id": r.pipeline_id, "stage_id": r.stage_id,
                     "days_in_stage": days(as_float(r.age)), "team_p75_days": days(as_float(r.p75)),
                     # operator: a stalled row has an age above its p75, so neither is None
                     "days_over": days(as_float(r.age) - as_float(r.p75)),  # type: ignore[operator]
                     "baseline": basis.baseline, "baseline_stays": basis.baseline_stays})
    unassigned: list[Row] = []
    if f.rep_id is None:  # open leads nobody owns: their own signal, not compared with anyone
        unassigned = [{"lead_id": r.lead_id, "team_id": r.team_id, "pipeline_id": r.pipeline_id,
                       "stage_id": r.stage_id, "days_in_stage": days(as_float(r.age))}
                      for r in await fetch(session, queries.stalled.unowned(f, now_ts))]
    return rows, unassigned
