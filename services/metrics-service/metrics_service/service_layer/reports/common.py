"""What every report's shaping shares: the answer's row, the dialect, group names and rep names."""
from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters.reports import Filters, names_of_reps
from ...adapters.reports.sql import GroupBy, Number

Row = dict[str, Any]  # a report row, as the API answers it (entrypoints/responses.py types them)


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def group_name(value: str | None) -> str | None:
    return value or None


def as_float(value: Number | None) -> float | None:
    return None if value is None else float(value)


async def name_groups(session: AsyncSession, f: Filters, rows: list[Row], key: str = "group",
                      default: GroupBy = None) -> list[Row]:
    if (f.group_by or default) == "rep":
        names = await names_of_reps(session, f.org_id, {r[key] for r in rows if r.get(key)})
        for r in rows:
            r["rep_name"] = names.get(r[key]) if r.get(key) else None
    return rows
