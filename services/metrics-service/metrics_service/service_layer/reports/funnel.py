"""The funnel: each creation cohort's reach of its pipeline's stages, conversion between them, drop-off and
median days in stage (the SQL: adapters/reports/funnel.py)."""
from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters import rollups
from ...adapters.orm import m_cohort_months
from ...adapters.reports import Filters, fetch
from ...adapters.reports.funnel import StageTimes
from ...adapters.reports.sql import Number, duration_months
from ...domain import formulas
from ...domain.periods import days
from .common import Row, as_float, dialect_of, group_name, name_groups

NO_STAYS = StageTimes("", "", "", None, 0)  # a stage without completed stays by the cohort


async def funnel(session: AsyncSession, f: Filters) -> list[Row]:
    f = f.credited("first")
    months = duration_months(dialect_of(session), f)
    reached = await fetch(session, queries.funnel.reached(f, months))
    times: dict[tuple[str, str, str], StageTimes]
    if months is not None and queries.funnel.by_month_rollup(f, months):
        times = _cohort_stats(await rollups.grouped_duration_rows(
            session, m_cohort_months, [f.rollup_group(), "m.pipeline_id", "m.stage_id"], ["m.dropped_leads"],
            f.org_id, months, pipeline_id=f.pipeline_id, owner_id=f.rep_id))
    else:
        times = {(r.g, r.pipeline_id, r.stage_id): r
                 for r in await fetch(session, queries.funnel.stage_times(f, dialect_of(session)))}
    out: list[Row] = []
    prev: Number | None = None  # the previous stage's count in the group; None at a group's first stage
    prev_key: tuple[str, str] | None = None
    first: Number = 0
    for r in reached:
        key = (r.g, r.pipeline_id)
        if key != prev_key:
            prev_key, prev, first = key, None, r.reached
        stat = times.get((r.g, r.pipeline_id, r.stage_id), NO_STAYS)
        out.append({"group": group_name(r.g), "pipeline_id": r.pipeline_id, "stage_id": r.stage_id,
                    "stage_name": r.name, "position": r.position, "reached": int(r.reached),
                    "conversion_pct": formulas.pct(r.reached, prev) if prev is not None else None,
                    "conversion_from_first_pct": formulas.pct(r.reached, first),
                    "drop_off": int(stat.drop_off or 0), "median_days_in_stage": days(as_float(stat.median))})
        prev = r.reached
    return await name_groups(session, f, out)


def _cohort_stats(found: list[Any]) -> dict[tuple[str, str, str], StageTimes]:
    """(group, pipeline, stage) → median (merged sorted durations) and drop_off from m_cohort_months rows
    summed per group, pipeline and stage (grouped_duration_rows)."""
    return {(group, pipeline, stage): StageTimes(
        group, pipeline, stage, rollups.median_and_p75(rollups.merged([durations], runs))[0], dropped)
        for group, pipeline, stage, dropped, durations, runs in found}
