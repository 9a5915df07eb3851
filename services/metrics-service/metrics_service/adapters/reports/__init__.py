"""The reports' SQL over the read models, one module per family of reports (funnel, outcomes, durations,
activities, revenue, forecast, quotas, adoption, coaching, stalled deals, leaderboard).

Each module holds its reports' definitions (the API documentation of each endpoint, word for word what the SQL
does) and pure builders returning a `Sql`: the text for the dialect and the parameters it binds. Statements run
here, in `fetch` (and the monthly rollups' in adapters/rollups.py); service_layer/reports/ (the same families)
makes the answers.
Every query is scoped to the caller's org; a rep sees only leads they own (and their own activity rows).
"""
from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ..repository import Quota, quotas_where
from . import (
    activities,
    adoption,
    coaching,
    durations,
    forecast,
    funnel,
    leaderboard,
    outcomes,
    quotas,
    revenue,
    stalled,
)
from .sql import COMMON, Filters, Query, R, Sql, rep_names

__all__ = ["COMMON", "DEFINITIONS", "Filters", "Query", "Sql", "fetch", "fetch_quotas", "names_of_reps"]

DEFINITIONS: dict[str, str] = {
    "funnel": funnel.DEFINITION, "win_rate": outcomes.WIN_RATE, "deal_size": outcomes.DEAL_SIZE,
    "sales_cycle": durations.SALES_CYCLE, "response_time": durations.RESPONSE_TIME,
    "conversion": outcomes.CONVERSION, "activities": activities.DEFINITION, "production": revenue.PRODUCTION,
    "forecast": forecast.DEFINITION, "forecast_accuracy": forecast.ACCURACY, "quota_attainment": quotas.ATTAINMENT,
    "adoption": adoption.DEFINITION, "coaching": coaching.DEFINITION, "stalled_deals": stalled.DEFINITION,
    "handovers": outcomes.HANDOVERS, "leaderboard": leaderboard.DEFINITION,
}


async def fetch(session: AsyncSession, query: Query[R]) -> list[R]:
    """The rows of a report's statement, each read into `query.row` (a NamedTuple): the columns its fields name,
    found by name once per statement, one tuple per row (no dict per row)."""
    statement = sa.text(query.text)
    if query.expanding:
        statement = statement.bindparams(*(sa.bindparam(name, expanding=True) for name in query.expanding))
    result = await session.execute(statement, query.params)
    make: Callable[..., R] = query.row
    columns = tuple(result.keys())
    fields = _read_fields(query.row, columns)
    if columns == fields:
        return [make(*r) for r in result.all()]
    if len(fields) == 1:  # itemgetter of one index gives the value, not a tuple
        only = columns.index(fields[0])
        return [make(r[only]) for r in result.all()]
    pick = itemgetter(*(columns.index(name) for name in fields))
    return [make(*pick(r)) for r in result.all()]


def _read_fields(row: Any, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The fields of `row` read from the columns: all of them, but for trailing ones with a default that have no
    column (they keep their default)."""
    fields: tuple[str, ...] = row._fields
    read = len(fields)
    while read and fields[read - 1] not in columns and fields[read - 1] in row._field_defaults:
        read -= 1
    missing = [name for name in fields[:read] if name not in columns]
    if missing:
        raise LookupError(f"{row.__name__}: the statement has no column {', '.join(missing)} (it has {columns})")
    return fields[:read]


async def fetch_quotas(session: AsyncSession, query: sa.Select[tuple[object, ...]]) -> list[Quota]:
    return await quotas_where(session, query)


async def names_of_reps(session: AsyncSession, org_id: str, rep_ids: set[str]) -> dict[str, str | None]:
    """Rep id → name (None when the directory copy has none), for the reps named in a report."""
    ids = sorted(i for i in rep_ids if i)
    if not ids:
        return {}
    return {r.rep_id: r.name for r in await fetch(session, rep_names(org_id, ids))}
