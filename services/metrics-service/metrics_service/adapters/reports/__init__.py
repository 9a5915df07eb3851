"""The reports' SQL over the read models, one module per family of reports (funnel, outcomes, durations,
activities, revenue, forecast, quotas, adoption, coaching, stalled deals, leaderboard).

Each module holds its reports' definitions (the API documentation of each endpoint, word for word what the SQL
does) and pure builders returning a `Sql`: the text for the dialect and the parameters it binds. Statements run
here, in `fetch` (and the monthly rollups' in adapters/rollups.py); service_layer/reports/ (the same families)
makes the answers.
Every query is scoped to the caller's org; a rep sees only leads they own (and their own activity rows).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .. import rollups
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
    bind = session.get_bind()
    if bind.dialect.name == "postgresql" and not query.expanding:
        # Fetched by the driver directly (as the rollups are), the statement rendered for it once per text: what
        # SQLAlchemy sends for it is the same text with the same values, but its statement, execution context and
        # result around each call cost more than a report's small statement does (issue 21).
        sql, names = _rendered(bind.dialect, query.text)
        records = await rollups.fetch_records(session, sql, [query.params[name] for name in names])
        if not records:
            return []
        return _read(query.row, tuple(records[0].keys()), records)
    statement = sa.text(query.text)
    if query.expanding:
        statement = statement.bindparams(*(sa.bindparam(name, expanding=True) for name in query.expanding))
    result = await session.execute(statement, query.params)
    return _read(query.row, tuple(result.keys()), result.all())


@lru_cache(maxsize=1024)  # the reports' texts: one per report and combination of filters, the values bound
def _rendered(dialect: sa.Dialect, text: str) -> tuple[str, tuple[str, ...]]:
    """A report's text as the dialect's driver takes it ($1, $2, …) and the parameter each number stands for."""
    compiled = sa.text(text).compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ())


def _read(row: Any, columns: tuple[str, ...], rows: Sequence[Any]) -> list[Any]:
    """Each of `rows` (with `columns`) read into `row`, a NamedTuple (`fetch`)."""
    make: Callable[..., Any] = row
    fields = _read_fields(row, columns)
    if columns == fields:
        return [make(*r) for r in rows]
    if len(fields) == 1:  # itemgetter of one index gives the value, not a tuple
        only = columns.index(fields[0])
        return [make(r[only]) for r in rows]
    pick = itemgetter(*(columns.index(name) for name in fields))
    return [make(*pick(r)) for r in rows]


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
