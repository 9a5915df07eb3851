"""Activity totals per rep (or team) (the SQL: adapters/reports/activities.py)."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch
from .common import Row, group_name, name_groups


async def activities(session: AsyncSession, f: Filters) -> list[Row]:
    rows: list[Row] = []
    if f.pipeline_id is not None:
        for r in await fetch(session, queries.activities.pipeline_totals(f)):
            row: Row = {"group": group_name(r["g"]), **{c: int(r[c] or 0) for c in queries.activities.KINDS}}
            row.update(records_entered=None, records_updated=None,  # not known per pipeline
                       talk_minutes=round(int(r["talk_seconds"] or 0) / 60.0, 2))
            rows.append(row)
        return await name_groups(session, f, rows, default="rep")
    for r in await fetch(session, queries.activities.daily_totals(f)):
        row = {"group": group_name(r["g"])}
        row.update({c: int(r[c] or 0) for c in queries.activities.COLUMNS if c != "talk_seconds"})
        row["talk_minutes"] = round(int(r["talk_seconds"] or 0) / 60.0, 2)
        rows.append(row)
    return await name_groups(session, f, rows, default="rep")
