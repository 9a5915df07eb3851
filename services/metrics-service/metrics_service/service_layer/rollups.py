"""The monthly rollups (m_closed_months, m_exit_months): kept by the projector, read by the reports.

Maintenance is a difference: before a batch is written, the rollup rows of the leads it touches are read
from m_leads / m_timeline (`contributions`), again after, and `after − before` is added per key; keys that
fall to zero are deleted. A lead's contribution only depends on its read-model rows, so the rollups equal a
GROUP BY over those tables whatever the batches, their order or a rebuild (`fill` computes that GROUP BY,
for a migration or a bulk load).

Reports read a period [from, to) as the whole months inside it from a rollup plus the rows of the partial
months at its edges from the read model (`edges`).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.inbox import dialect_insert

from ..adapters.orm import ROLLUP_KEYS, m_closed_months, m_exit_months, m_leads, m_timeline
from ..domain.periods import month_number, month_start_ts, whole_months

CHUNK = 400
EXIT_KINDS = ("stage", "won", "lost", "disqualified")
Contributions = dict[sa.Table, dict[tuple[Any, ...], list[Any]]]


def _by_org(leads: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for org, lead_id in sorted(set(leads)):
        out[org].append(lead_id)
    return out


def _key(value: str | None) -> str:
    return value or ""


async def contributions(session: AsyncSession, leads: Iterable[tuple[str, str]]) -> Contributions:
    """What these leads add to each rollup row now: {table: {(org, month, owner, team, pipeline[, outcome]):
    [measures]}}."""
    closed: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    exits: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0])
    lead, t = m_leads.c, m_timeline.c
    for org, ids in _by_org(leads).items():
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            for r in await session.execute(sa.select(
                    lead.closed_ts, lead.outcome, lead.owner_id, lead.team_id, lead.pipeline_id, lead.won_value,
                    lead.value).where(lead.org_id == org, lead.lead_id.in_(part), lead.outcome != "open",
                                      lead.closed_ts.is_not(None))):
                measures = closed[(org, month_number(r.closed_ts), _key(r.owner_id), _key(r.team_id),
                                   _key(r.pipeline_id), r.outcome)]
                measures[0] += 1
                value = r.won_value if r.won_value is not None else r.value
                measures[1] += Decimal(value) if value is not None else Decimal(0)
            for r in await session.execute(sa.select(
                    t.next_ts, t.owner_id, t.team_id, t.lead_pipeline_id, t.next_kind, t.next_reason, t.tasks_done
                    ).where(t.org_id == org, t.lead_id.in_(part), t.kind == "stage", t.next_ts.is_not(None),
                            t.next_kind.in_(EXIT_KINDS))):
                measures = exits[(org, month_number(r.next_ts), _key(r.owner_id), _key(r.team_id),
                                  _key(r.lead_pipeline_id))]
                measures[0] += 1
                measures[1] += int((r.next_kind == "stage" and r.next_reason == "goal_met") or bool(r.tasks_done))
    return {m_closed_months: closed, m_exit_months: exits}


async def add_difference(session: AsyncSession, before: Contributions, after: Contributions) -> None:
    """Add `after − before` to the rollups and delete the rows that fall to zero."""
    for table, new in after.items():
        old = before[table]
        key_columns = ["org_id", *ROLLUP_KEYS, *(["outcome"] if table is m_closed_months else [])]
        measure_columns = [c.name for c in table.columns if c.name not in key_columns]
        rows = []
        for key in set(old) | set(new):
            delta = [n - o for n, o in zip(new.get(key, [0] * len(measure_columns)),
                                           old.get(key, [0] * len(measure_columns)), strict=True)]
            if any(delta):
                rows.append({**dict(zip(key_columns, key, strict=True)), **dict(zip(measure_columns, delta,
                                                                                   strict=True))})
        if not rows:
            continue
        rows.sort(key=lambda r: tuple(r[c] for c in key_columns))  # a stable lock order between batches
        insert = dialect_insert(session)(table)
        insert = insert.on_conflict_do_update(index_elements=key_columns, set_={
            c: table.c[c] + insert.excluded[c] for c in measure_columns})
        for i in range(0, len(rows), CHUNK):
            await session.execute(insert, rows[i:i + CHUNK])
        emptied = [tuple(r[c] for c in key_columns) for r in rows]
        for i in range(0, len(emptied), CHUNK):
            await session.execute(sa.delete(table).where(
                sa.tuple_(*[table.c[c] for c in key_columns]).in_(emptied[i:i + CHUNK]),
                table.c[measure_columns[0]] == 0))


def _month_sql(column: str, dialect: str) -> str:
    if dialect == "postgresql":
        moment = f"(to_timestamp(floor({column})) AT TIME ZONE 'UTC')"
        return f"CAST(EXTRACT(YEAR FROM {moment}) * 12 + EXTRACT(MONTH FROM {moment}) - 1 AS INTEGER)"
    return (f"(CAST(strftime('%Y', CAST({column} AS INTEGER), 'unixepoch') AS INTEGER) * 12 "
            f"+ CAST(strftime('%m', CAST({column} AS INTEGER), 'unixepoch') AS INTEGER) - 1)")


def fill_sql(dialect: str, org_condition: str) -> list[str]:
    """INSERT … SELECT statements that compute both rollups from m_leads and m_timeline (one GROUP BY each),
    for the rows matching `org_condition` (e.g. " AND org_id = :org", or "" for all)."""
    return [f"""
INSERT INTO m_closed_months (org_id, month, owner_id, team_id, pipeline_id, outcome, leads, value)
SELECT org_id, {_month_sql('closed_ts', dialect)}, COALESCE(owner_id, ''), COALESCE(team_id, ''),
       COALESCE(pipeline_id, ''), outcome, COUNT(*), SUM(COALESCE(won_value, value, 0))
FROM m_leads WHERE outcome <> 'open' AND closed_ts IS NOT NULL{org_condition} GROUP BY 1, 2, 3, 4, 5, 6""", f"""
INSERT INTO m_exit_months (org_id, month, owner_id, team_id, pipeline_id, exits, compliant)
SELECT org_id, {_month_sql('next_ts', dialect)}, COALESCE(owner_id, ''), COALESCE(team_id, ''),
       COALESCE(lead_pipeline_id, ''), COUNT(*),
       SUM(CASE WHEN (next_kind = 'stage' AND next_reason = 'goal_met') OR tasks_done THEN 1 ELSE 0 END)
FROM m_timeline WHERE kind = 'stage' AND next_ts IS NOT NULL
  AND next_kind IN ('stage', 'won', 'lost', 'disqualified'){org_condition} GROUP BY 1, 2, 3, 4, 5"""]


async def fill(session: AsyncSession, org_id: str) -> None:
    """Recompute both rollups of one org from its read models (after a bulk load of them)."""
    for table in (m_closed_months, m_exit_months):
        await session.execute(sa.delete(table).where(table.c.org_id == org_id))
    for statement in fill_sql(session.bind.dialect.name, " AND org_id = :org"):
        await session.execute(sa.text(statement), {"org": org_id})


def month_range(params: dict[str, Any], first: int | None, end: int | None, alias: str = "m") -> str:
    """SQL condition on `alias.month` for the months [first, end) (None: unbounded)."""
    parts = ["TRUE"]
    if first is not None:
        parts.append(f"{alias}.month >= :first_month")
        params["first_month"] = first
    if end is not None:
        parts.append(f"{alias}.month < :end_month")
        params["end_month"] = end
    return " AND ".join(parts)


def edges(params: dict[str, Any], from_ts: float | None, to_ts: float | None, column: str
          ) -> tuple[str, str] | None:
    """(condition on the months inside [from, to) for the rollup, condition on `column` for the rows of the
    partial months at the period's edges), or None when no whole month fits (then read the rows alone)."""
    first, end = whole_months(from_ts, to_ts)
    if first is not None and end is not None and first >= end:
        return None
    edge_parts = []
    if first is not None:
        edge_parts.append(f"({column} >= :from_ts AND {column} < :first_month_ts)")
        params.update(from_ts=from_ts, first_month_ts=month_start_ts(first))
    if end is not None:
        edge_parts.append(f"({column} >= :end_month_ts AND {column} < :to_ts)")
        params.update(to_ts=to_ts, end_month_ts=month_start_ts(end))
    return month_range(params, first, end), f"({' OR '.join(edge_parts) or 'FALSE'})"
