"""Stalled deals: open leads in a stage for longer than their team's 75th percentile of stays there."""
from __future__ import annotations

from typing import NamedTuple

from ...domain.periods import DAY_S
from .coaching import ended_stays, ended_stays_per_stage
from .sql import Dialect, Filters, Number, Params, Query, Sql, bound, per_stage, stats_sql

DEFINITION = (
    "Stalled deals: open leads with an owner whose time in their current stage (now − entry) exceeds the "
    "75th percentile (nearest rank) of completed stays in that stage by leads of the same team; the "
    "baseline is the first with at least 5 completed stays: the team's stays entered in [from, to) "
    "(team_period), the team's stays entered in the 365 days before `to` (or now) (team_trailing_year), "
    "every team's stays of the stage in those days (org_trailing_year); with none the lead is not judged. "
    "Each row says its baseline and baseline_stays. Sorted by how far they exceed it; at most 500. Open "
    "leads nobody owns are listed apart in `unassigned` (oldest first, compared with no one). group_by "
    "does not apply (422).")

LIMIT = 500
# The oldest entries per team and stage read first (`probe`): the LIMIT-th largest excess among them is a floor
# that at least LIMIT leads reach, so only the leads at or above it are ranked (some hundreds, not the ~120k open
# leads past their p75 at 1M leads). The index range (entered ≤ now − p75 − floor, plus a second of slack for
# rounding) only narrows the scan; the exact comparison decides.
PROBE = 2
TRAILING_DAYS = 365
P75_AGGREGATE = "SELECT COUNT(*) AS n, percentile_disc(0.75) WITHIN GROUP (ORDER BY x) AS p75 FROM v"


class StageP75(NamedTuple):
    """A team's ended stays in a stage: how many, and the 75th percentile (nearest rank) of their durations."""

    team: str
    pipeline_id: str
    stage_id: str
    n: Number
    p75: Number | None


class Stay(NamedTuple):
    x: float  # seconds


class WaitingStage(NamedTuple):
    team: str
    pipeline_id: str
    stage_id: str


class RepTeam(NamedTuple):
    team_id: str | None


class Stage(NamedTuple):
    pipeline_id: str
    stage_id: str


class Waiting(NamedTuple):
    team: str
    p: str
    s: str


class OpenLead(NamedTuple):
    """An open lead with an owner, its age in its current stage (seconds), and (`most_stalled`) its team's
    threshold there (seconds) that the age exceeds."""

    lead_id: str
    owner_id: str
    team_id: str | None
    pipeline_id: str
    stage_id: str
    age: float
    p75: float | None = None


class UnownedLead(NamedTuple):
    lead_id: str
    team_id: str | None
    pipeline_id: str
    stage_id: str
    age: float


def lead_filters(f: Filters) -> Sql:
    """The conditions on the open leads `l` judged (appended to a WHERE): a rep's own, the pipeline's."""
    params: Params = {}
    me = " AND l.owner_id = :me" if f.rep_id is not None else ""
    if f.rep_id is not None:
        params["me"] = f.rep_id
    pipeline = " AND l.pipeline_id = :pipeline" if f.pipeline_id is not None else ""
    if f.pipeline_id is not None:
        params["pipeline"] = f.pipeline_id
    return Sql(me + pipeline, params)


def team_stage_p75(f: Filters, dialect: Dialect) -> Query[StageP75]:
    """Per team and stage (team, pipeline_id, stage_id), over the ended stays entered in [from, to): n and p75
    (nearest rank)."""
    if dialect == "postgresql":
        inner = ended_stays_per_stage(f)
        return Sql(per_stage(inner.text, P75_AGGREGATE, per_team=True), inner.params).read_as(StageP75)
    stays = ended_stays(f)
    return Sql(stats_sql(stays.text, ["team", "pipeline_id", "stage_id"], dialect), stays.params).read_as(StageP75)


def trailing_stays(f: Filters, key: tuple[str, str, str], end_ts: float, *, whole_org: bool) -> Query[Stay]:
    """The durations x of the ended stays of one stage (the team's, or every team's) entered in the
    TRAILING_DAYS before `end_ts`."""
    team, pipeline_id, stage_id = key
    params: Params = {"org": f.org_id, "p": pipeline_id, "s": stage_id, "a": end_ts - TRAILING_DAYS * DAY_S,
                      "b": end_ts, "team": team}
    where = ["t.org_id = :org", "t.kind = 'stage'", "t.next_ts IS NOT NULL", "t.pipeline_id = :p",
             "t.stage_id = :s", "t.at_ts >= :a", "t.at_ts < :b"]
    if not whole_org:
        where.append("t.team_id = :team" if team else "t.team_id IS NULL")
    if f.pipeline_id is not None:
        where.append("t.lead_pipeline_id = :pipeline")
        params["pipeline"] = f.pipeline_id
    return Sql(f"SELECT t.next_ts - t.at_ts AS x FROM m_timeline t WHERE {' AND '.join(where)}", params).read_as(Stay)


def waiting_stages(f: Filters) -> Query[WaitingStage]:
    """The (team, pipeline_id, stage_id) where open leads with an owner wait (every open lead read: the
    embedded mode's few)."""
    leads = lead_filters(f)
    return Sql(f"""
SELECT DISTINCT COALESCE(l.team_id, '') AS team, l.pipeline_id, l.current_stage_id AS stage_id FROM m_leads l
WHERE l.org_id = :org AND l.outcome = 'open' AND l.current_stage_id IS NOT NULL AND l.owner_id IS NOT NULL
{leads.text}""", bound(leads, org=f.org_id)).read_as(WaitingStage)


def rep_teams(org_id: str) -> Query[RepTeam]:
    return Sql("SELECT DISTINCT team_id FROM m_reps WHERE org_id = :org", {"org": org_id}).read_as(RepTeam)


def stages(org_id: str) -> Query[Stage]:
    return Sql("SELECT pipeline_id, stage_id FROM m_stages WHERE org_id = :org", {"org": org_id}).read_as(Stage)


def waiting_among(f: Filters, candidates: list[tuple[str, str, str]]) -> Query[Waiting]:
    """PostgreSQL: which of the candidate (team, p, s) have open leads with an owner waiting, probed with one
    index lookup each instead of reading every open lead."""
    leads = lead_filters(f)
    open_leads = ("SELECT 1 FROM m_leads l WHERE l.org_id = :org AND l.outcome = 'open' AND l.pipeline_id = k.p "
                  f"AND l.current_stage_id = k.s AND l.owner_id IS NOT NULL{leads.text}")
    return Sql(f"""
SELECT k.team, k.p, k.s
FROM unnest(CAST(:k_team AS TEXT[]), CAST(:k_p AS TEXT[]), CAST(:k_s AS TEXT[])) AS k(team, p, s)
WHERE CASE WHEN k.team = '' THEN EXISTS ({open_leads} AND l.team_id IS NULL)
           ELSE EXISTS ({open_leads} AND l.team_id = k.team) END""",
               bound(leads, org=f.org_id, k_team=[c[0] for c in candidates], k_p=[c[1] for c in candidates],
                     k_s=[c[2] for c in candidates])).read_as(Waiting)


def most_stalled(f: Filters, now_ts: float | None, thresholds: dict[tuple[str, str, str], float]) -> Query[OpenLead]:
    """PostgreSQL: the LIMIT open leads with an owner most over their team and stage's threshold (`thresholds`:
    (team, pipeline, stage) → seconds): per team and stage the open leads in it (ix_m_leads_open_stage), the
    leads with no team against the '' team like COALESCE(team_id, ''). Columns: lead_id, owner_id, team_id,
    pipeline_id, stage_id, age, p75."""
    filters = lead_filters(f)
    keys = sorted(thresholds)
    p75 = ("SELECT team, pipeline_id, stage_id, 1 AS n, p75 FROM unnest(CAST(:p_team AS TEXT[]), "
           "CAST(:p_pipeline_id AS TEXT[]), CAST(:p_stage_id AS TEXT[]), CAST(:p_p75 AS FLOAT8[])) "
           "AS p(team, pipeline_id, stage_id, p75)")
    leads = ("SELECT l.lead_id, l.owner_id, l.team_id, l.current_stage_entered_ts FROM m_leads l "
             "WHERE l.org_id = :org AND l.outcome = 'open' AND l.pipeline_id = p.pipeline_id "
             "AND l.current_stage_id = p.stage_id AND l.current_stage_entered_ts IS NOT NULL "
             f"AND :now - l.current_stage_entered_ts > p.p75{filters.text} AND l.owner_id IS NOT NULL")
    oldest = f"ORDER BY l.current_stage_entered_ts LIMIT {PROBE}"
    return Sql(f"""
WITH p AS MATERIALIZED ({p75}),
probe AS MATERIALIZED (SELECT (:now - l.current_stage_entered_ts) - p.p75 AS over
          FROM p CROSS JOIN LATERAL (({leads} AND l.team_id = p.team {oldest})
                                     UNION ALL ({leads} AND p.team = '' AND l.team_id IS NULL {oldest})) l
          WHERE p.n > 0),
cut AS MATERIALIZED (SELECT COALESCE((SELECT over FROM probe ORDER BY over DESC OFFSET {LIMIT - 1} LIMIT 1),
                        CAST('-Infinity' AS FLOAT8)) AS over)
SELECT l.lead_id, l.owner_id, l.team_id, p.pipeline_id, p.stage_id, :now - l.current_stage_entered_ts AS age, p.p75
FROM p CROSS JOIN cut CROSS JOIN LATERAL (
  {leads} AND l.team_id = p.team AND l.current_stage_entered_ts <= :now - p.p75 - cut.over + 1
  UNION ALL {leads} AND p.team = '' AND l.team_id IS NULL
            AND l.current_stage_entered_ts <= :now - p.p75 - cut.over + 1) l
WHERE p.n > 0 AND (:now - l.current_stage_entered_ts) - p.p75 >= cut.over
ORDER BY (:now - l.current_stage_entered_ts) - p.p75 DESC, l.lead_id LIMIT {LIMIT}""",
               bound(filters, org=f.org_id, now=now_ts, p_team=[k[0] for k in keys],
                     p_pipeline_id=[k[1] for k in keys], p_stage_id=[k[2] for k in keys],
                     p_p75=[thresholds[k] for k in keys])).read_as(OpenLead)


def open_with_owner(f: Filters, now_ts: float | None) -> Query[OpenLead]:
    """The open leads with an owner and their age in the current stage (the embedded mode's few, judged in
    Python): lead_id, owner_id, team_id, pipeline_id, stage_id, age."""
    filters = lead_filters(f)
    return Sql(f"""
SELECT l.lead_id, l.owner_id, l.team_id, l.pipeline_id, l.current_stage_id AS stage_id,
       :now - l.current_stage_entered_ts AS age FROM m_leads l
WHERE l.org_id = :org AND l.outcome = 'open' AND l.current_stage_entered_ts IS NOT NULL AND l.owner_id IS NOT NULL
  {filters.text}""", bound(filters, org=f.org_id, now=now_ts)).read_as(OpenLead)


def unowned(f: Filters, now_ts: float | None) -> Query[UnownedLead]:
    """Open leads nobody owns, oldest in their stage first (at most LIMIT): lead_id, team_id, pipeline_id,
    stage_id, age."""
    pipeline = " AND l.pipeline_id = :pipeline" if f.pipeline_id is not None else ""
    params: Params = {"org": f.org_id, "now": now_ts}
    if f.pipeline_id is not None:
        params["pipeline"] = f.pipeline_id
    return Sql(f"""
SELECT l.lead_id, l.team_id, l.pipeline_id, l.current_stage_id AS stage_id, :now - l.current_stage_entered_ts AS age
FROM m_leads l WHERE l.org_id = :org AND l.owner_id IS NULL AND l.outcome = 'open'
  AND l.current_stage_entered_ts IS NOT NULL{pipeline}
ORDER BY l.current_stage_entered_ts, l.lead_id LIMIT {LIMIT}""", params).read_as(UnownedLead)
