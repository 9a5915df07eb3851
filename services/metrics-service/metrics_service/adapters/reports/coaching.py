"""Coaching: each rep's stays per stage against their team's (conversion and median time in stage)."""
from __future__ import annotations

from typing import NamedTuple

from .sql import Dialect, Filters, Number, Query, Sql, per_stage, stats_sql, stays_from

DEFINITION = (
    "Coaching, per rep and stage, over stays that entered the stage in [from, to) and have ended, each "
    "credited to the owner (and that owner's team) at the stay's end: exits, converted = stays that ended "
    "by entering a higher position or by a win, conversion_pct = converted / exits × 100, "
    "median_days_in_stage; the same for the team alongside, and the differences. Stays nobody owned are "
    "no rep: they are counted per team and stage in `unassigned`. stalls_most: per rep, the stage where "
    "the rep's median time exceeds the team's by the largest ratio (rep median / team median), only "
    "where that ratio is above 1 (slower than the team); slower_than_team false and no stage otherwise. "
    "group_by does not apply (422).")

CONVERTED = ", SUM(conv) AS converted"
# both levels (rep and position; the team: team_level 1) in one pass per team and stage
BOTH_LEVELS = ("SELECT rep, position, GROUPING(rep, position) AS team_level, COUNT(*) AS n, "
               "percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median, SUM(conv) AS converted "
               "FROM v GROUP BY GROUPING SETS ((rep, position), ())")


class Stays(NamedTuple):
    """Ended stays in a stage: how many, how many converted, their median duration (seconds); a team's (rep ''),
    or a rep's at a position of the stage. `both_levels` says which (team_level 1: the team's, rep null)."""

    team: str
    pipeline_id: str
    stage_id: str
    n: Number
    converted: Number
    median: Number | None
    rep: str = ""
    position: int = 0
    team_level: int = 0


def ended_stays(f: Filters) -> Sql:
    """Ended stays entered in [from, to), with the rep and team of their lead (all reps: a rep compares
    with the team): rep, team, pipeline_id, stage_id, position, x (the duration), conv."""
    _, source = stays_from(f, "at_ts", own_only=False)
    return Sql(f"""
SELECT COALESCE(t.owner_id, '') AS rep, COALESCE(t.team_id, '') AS team, t.pipeline_id, t.stage_id,
       t.position, t.next_ts - t.at_ts AS x,
       CASE WHEN (t.next_kind = 'stage' AND t.next_position > t.position) OR t.next_kind = 'won' THEN 1 ELSE 0 END
         AS conv
{source.text} AND t.next_ts IS NOT NULL""", source.params)


def ended_stays_per_stage(f: Filters) -> Sql:
    """`ended_stays` for `per_stage` with per_team (the team and stage come from the index range)."""
    where = f.stay_where("at_ts", own_only=False)
    return Sql(f"""
SELECT COALESCE(t.owner_id, '') AS rep, t.position, t.next_ts - t.at_ts AS x,
       CASE WHEN (t.next_kind = 'stage' AND t.next_position > t.position) OR t.next_kind = 'won' THEN 1 ELSE 0 END
         AS conv
FROM m_timeline t WHERE {where.text} AND t.next_ts IS NOT NULL""", where.params)


def both_levels(f: Filters) -> Query[Stays]:
    """PostgreSQL: per team and stage (team, pipeline_id, stage_id), the rows per rep and position and the
    team's row (team_level 1): n, median, converted."""
    inner = ended_stays_per_stage(f)
    return Sql(per_stage(inner.text, BOTH_LEVELS, per_team=True), inner.params).read_as(Stays)


def per_rep(f: Filters, dialect: Dialect) -> Query[Stays]:
    """Per rep, team, stage and position: n, median, converted, … of the ended stays."""
    stays = ended_stays(f)
    return Sql(stats_sql(stays.text, ["rep", "team", "pipeline_id", "stage_id", "position"], dialect, CONVERTED),
               stays.params).read_as(Stays)


def per_team(f: Filters, dialect: Dialect) -> Query[Stays]:
    """Per team and stage: n, median, p75, converted, … of the ended stays."""
    stays = ended_stays(f)
    return Sql(stats_sql(stays.text, ["team", "pipeline_id",
               "stage_id"], dialect, CONVERTED), stays.params).read_as(Stays)
