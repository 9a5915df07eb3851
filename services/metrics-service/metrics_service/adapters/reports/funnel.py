"""The funnel: how far each creation cohort got through its pipeline's stages, and how long it stayed."""
from __future__ import annotations

from typing import NamedTuple

from .sql import (
    STAY_GROUPS,
    Dialect,
    Filters,
    Months,
    Number,
    Query,
    Sql,
    bound,
    month_range,
    per_stage,
    stats_sql,
    stays_from,
)

DEFINITION = (
    "Funnel. Cohort: leads whose first stage entry (pipeline entered) is in [from, to), credited to the "
    "owner at creation; the stays (median days, drop-off) to the owner at the stay's end. For each stage of "
    "the cohort's pipeline(s): reached = cohort leads whose highest stage position entered in that pipeline "
    "is >= the stage's position (entered it or a later one); conversion_pct = reached / reached of the "
    "previous stage × 100 (null for the first stage); conversion_from_first_pct = reached / reached of the "
    "first stage × 100; drop_off = cohort leads that were lost or disqualified while in that stage; "
    "median_days_in_stage = median of (next boundary − entry) over the cohort's completed stays in the "
    "stage (a stay ends at the lead's next stage entry, win, loss or disqualification).")


class Reached(NamedTuple):
    """A stage of a cohort's pipeline, in a group: how many of the cohort reached it (`reached`)."""

    g: str
    pipeline_id: str
    stage_id: str
    name: str
    position: int
    reached: Number


class StageTimes(NamedTuple):
    """A stage's completed stays by the cohort, in a group: their median duration (seconds) and the cohort leads
    lost or disqualified in the stage."""

    g: str
    pipeline_id: str
    stage_id: str
    median: Number | None
    drop_off: Number | None


def by_month_rollup(f: Filters, months: Months | None) -> bool:
    """Whether the cohorts' months come from the rollups (m_reach_months, m_cohort_months)."""
    return months is not None and (f.group_by is None or f.group_by in STAY_GROUPS)


def reached(f: Filters, months: Months | None) -> Query[Reached]:
    """Per group and stage of the cohort's pipelines: reached (g, pipeline_id, stage_id, name, position,
    reached), ordered by group, pipeline and position. `months`: from m_reach_months (duration_months)."""
    f = f.credited("first")
    if months is not None and by_month_rollup(f, months):  # cohort leads by month
        where, period = f.rollup_where(), month_range(*months)
        counts = (f"SELECT {f.rollup_group()} AS g, m.pipeline_id, m.max_position, SUM(m.leads) AS cnt "
                  f"FROM m_reach_months m WHERE {where.text} AND {period.text} GROUP BY 1, 2, 3")
        params = bound(where, period)
    else:
        where = f.lead_where("pipeline_entered_ts")
        counts = (f"SELECT g, pipeline_id, max_position, COUNT(*) AS cnt FROM (SELECT {f.group_sql()} AS g, "
                  f"l.lead_id, l.pipeline_id, l.max_position FROM m_leads l WHERE {where.text}) c "
                  "GROUP BY g, pipeline_id, max_position")
        params = bound(where)
    return Sql(f"""
WITH h AS ({counts}),
gp AS (SELECT DISTINCT g, pipeline_id FROM h)
SELECT gp.g, s.pipeline_id, s.stage_id, s.name, s.position,
       (SELECT COALESCE(SUM(h.cnt), 0) FROM h WHERE h.g = gp.g AND h.pipeline_id = s.pipeline_id
          AND h.max_position >= s.position) AS reached
FROM gp JOIN m_stages s ON s.org_id = :org AND s.pipeline_id = gp.pipeline_id
ORDER BY gp.g, s.pipeline_id, s.position, s.stage_id""", params).read_as(Reached)


def stage_times(f: Filters, dialect: Dialect) -> Query[StageTimes]:
    """Per group and stage: the median of the cohort's completed stays (median) and drop_off, over the stays
    themselves (g, pipeline_id, stage_id, median, drop_off, …)."""
    group, source = stays_from(f, "cohort_ts")
    drop_off = ", COUNT(DISTINCT CASE WHEN dropped = 1 THEN lead_id END) AS drop_off"
    if dialect == "postgresql" and (f.group_by is None or f.group_by in STAY_GROUPS):
        inner = f"""
SELECT {group} AS g, t.next_ts - t.at_ts AS x, t.lead_id,
       CASE WHEN t.next_kind IN ('lost', 'disqualified') THEN 1 ELSE 0 END AS dropped
{source.text} AND t.next_ts IS NOT NULL AND t.pipeline_id = t.lead_pipeline_id"""
        aggregate = ("SELECT g, percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median"
                     f"{drop_off} FROM v GROUP BY g")
        return Sql(per_stage(inner, aggregate, per_team=False), source.params).read_as(StageTimes)
    stays = f"""
SELECT {group} AS g, t.pipeline_id, t.stage_id, t.next_ts - t.at_ts AS x, t.lead_id,
       CASE WHEN t.next_kind IN ('lost', 'disqualified') THEN 1 ELSE 0 END AS dropped
{source.text} AND t.pipeline_id = t.lead_pipeline_id"""
    return Sql(stats_sql(stays, ["g", "pipeline_id", "stage_id"], dialect, drop_off), source.params).read_as(StageTimes)
