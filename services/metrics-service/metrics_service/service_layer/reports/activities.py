"""Activity totals per rep (or team) (the SQL: adapters/reports/activities.py)."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters.reports import Filters, fetch
from ...adapters.reports.activities import ActivityTotals
from .common import Row, group_name, name_groups


async def activities(session: AsyncSession, f: Filters) -> list[Row]:
    if f.pipeline_id is not None:  # records entered and updated are not known per pipeline
        rows = [_totals(r, None, None) for r in await fetch(session, queries.activities.pipeline_totals(f))]
    else:
        rows = [_totals(r, int(r.records_entered or 0), int(r.records_updated or 0))
                for r in await fetch(session, queries.activities.daily_totals(f))]
    return await name_groups(session, f, rows, default="rep")


def _totals(r: ActivityTotals, records_entered: int | None, records_updated: int | None) -> Row:
    return {"group": group_name(r.g), "calls": int(r.calls or 0), "emails_logged": int(r.emails_logged or 0),
            "emails_sequence": int(r.emails_sequence or 0), "meetings": int(r.meetings or 0),
            "demos": int(r.demos or 0), "proposals": int(r.proposals or 0), "notes": int(r.notes or 0),
            "records_entered": records_entered, "records_updated": records_updated,
            "talk_minutes": round(int(r.talk_seconds or 0) / 60.0, 2)}
