"""Adoption: how much of the open pipeline is kept up to date (coverage), and how stages are left (compliance)."""
from __future__ import annotations

from typing import NamedTuple

from .sql import Filters, Number, Query, Sql, bound, edges, stays_from

DEFINITION = (
    "Adoption. coverage (as of now; from/to do not apply): open leads (created, final outcome open; "
    "current owner) that are in a pipeline, have an owner and no overdue required task (open, required, "
    "flagged overdue or due before now) / all open leads × 100. compliance (the exit in [from, to)): stage "
    "exits (a stay that ended by another stage entry, a win, a loss or a disqualification) that were a "
    "win, by goal (the next entry's reason is goal_met), or whose visit had required tasks (created "
    "during that visit) that were all completed / all stage exits × 100, credited to the owner at the "
    "exit, per group (rep by default; leads nobody owned are the null group). `time_basis` says both.")

COMPLIANT = ("CASE WHEN (t.next_kind = 'stage' AND t.next_reason = 'goal_met') OR t.tasks_done "
             "OR t.next_kind = 'won' THEN 1 ELSE 0 END")
EXITS = "t.next_kind IN ('stage', 'won', 'lost', 'disqualified')"


class Coverage(NamedTuple):
    g: str
    open_leads: int | None
    covered: Number | None


class Compliance(NamedTuple):
    g: str
    exits: Number | None
    compliant: Number | None


def coverage(f: Filters, now_ts: float | None) -> Query[Coverage]:
    """Per group (g, rep by default): open_leads and covered, as of `now_ts`."""
    where = f.lead_where(None)
    return Sql(f"""
SELECT {f.group_sql("rep")} AS g, COUNT(*) AS open_leads,
  SUM(CASE WHEN l.pipeline_entered_ts IS NOT NULL AND l.owner_id IS NOT NULL AND NOT l.open_task_overdue
       AND NOT COALESCE(l.open_task_due_ts < :now, FALSE) THEN 1 ELSE 0 END) AS covered
FROM m_leads l WHERE {where.text} AND l.is_created AND l.outcome = 'open' GROUP BY 1""",
               bound(where, now=now_ts)).read_as(Coverage)


def compliance(f: Filters, *, by_month: bool) -> Query[Compliance]:
    """Per group (g, rep by default): exits and compliant, of the stage exits in the period (by the owner at the
    exit); `by_month` (rollup_serves): the whole months from m_exit_months, the partial months at the edges
    from the stays."""
    split = edges(f.from_ts, f.to_ts, "t.next_ts") if by_month else None
    if split is not None:
        months, edge = split
        group, source = stays_from(f, None, default="rep")
        where = f.rollup_where()
        return Sql(f"""
SELECT g, SUM(exits) AS exits, SUM(compliant) AS compliant FROM (
  SELECT {f.rollup_group("rep")} AS g, m.exits, m.compliant FROM m_exit_months m
  WHERE {where.text} AND {months.text}
  UNION ALL
  SELECT {group}, 1, {COMPLIANT} {source.text} AND t.next_ts IS NOT NULL AND {EXITS} AND {edge.text}) x
GROUP BY 1""", bound(months, edge, source, where)).read_as(Compliance)
    group, source = stays_from(f, "next_ts", default="rep")
    return Sql(f"""
SELECT {group} AS g, COUNT(*) AS exits, SUM({COMPLIANT}) AS compliant
{source.text} AND {EXITS}
GROUP BY 1""", source.params).read_as(Compliance)
