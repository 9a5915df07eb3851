"""metrics-service's own data (quotas, forecast snapshots, the reporting currency and exchange rates, announced
quota milestones) and the event log's bookkeeping: every query outside the reports (adapters/reports/) and the
read models' projection (adapters/read_models.py). Always org-scoped where an org is given; rows come back as
typed records."""
from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import reads_outside_a_transaction, rows_affected
from salesflow_shared.inbox import dialect_insert

from ..domain.exchange import Rate
from ..domain.periods import Period
from .milestones_orm import quota_milestones
from .orm import event_log, exchange_rates, forecast_snapshots, m_leads, org_currency, quotas


# ------------------------------------------------------------------ quotas
@dataclass(frozen=True)
class Quota:
    quota_id: str
    org_id: str
    scope: str  # rep or team
    scope_id: str
    period: Period
    period_start: date
    amount: Decimal
    currency: str
    version: int


def _quota(row: Any) -> Quota:
    return Quota(row.quota_id, row.org_id, row.scope, row.scope_id, row.period, row.period_start, row.amount,
                 row.currency, row.version)


async def quotas_where(session: AsyncSession, query: sa.Select[Any]) -> list[Quota]:
    return [_quota(r) for r in (await session.execute(query)).all()]


async def get_quota(session: AsyncSession, org_id: str, quota_id: str) -> Quota | None:
    row = (await session.execute(sa.select(quotas).where(
        quotas.c.org_id == org_id, quotas.c.quota_id == quota_id))).first()
    return None if row is None else _quota(row)


async def insert_quota(session: AsyncSession, values: Mapping[str, object]) -> bool:
    """False when the org already has a quota for that scope and period."""
    result = await session.execute(dialect_insert(session)(quotas).values(**values).on_conflict_do_nothing(
        index_elements=["org_id", "scope", "scope_id", "period", "period_start"]))
    return rows_affected(result) == 1


async def list_quotas(session: AsyncSession, org_id: str, *, rep_id: str | None, period: str | None,
                      scope: str | None, scope_id: str | None, after: str | None, limit: int) -> list[Quota]:
    """The org's quotas by id after `after` (a rep: their own), up to `limit`."""
    query = sa.select(quotas).where(quotas.c.org_id == org_id)
    if rep_id is not None:
        query = query.where(quotas.c.scope == "rep", quotas.c.scope_id == rep_id)
    for column, value in (("period", period), ("scope", scope), ("scope_id", scope_id)):
        if value is not None:
            query = query.where(quotas.c[column] == value)
    if after:
        query = query.where(quotas.c.quota_id > after)
    return await quotas_where(session, query.order_by(quotas.c.quota_id).limit(limit))


async def update_quota(session: AsyncSession, quota: Quota, changes: Mapping[str, object], now: datetime) -> bool:
    """Apply `changes` if the quota is still at the version read (False: it changed meanwhile)."""
    result = await session.execute(sa.update(quotas).where(
        quotas.c.org_id == quota.org_id, quotas.c.quota_id == quota.quota_id, quotas.c.version == quota.version,
    ).values(**changes, version=quota.version + 1, updated_at=now))
    return rows_affected(result) == 1


async def delete_quota(session: AsyncSession, org_id: str, quota_id: str) -> None:
    await session.execute(sa.delete(quotas).where(quotas.c.org_id == org_id, quotas.c.quota_id == quota_id))


async def unannounced_quotas(session: AsyncSession, started_by: date, started_after: date) -> list[Quota]:
    """Every org's quotas whose period started in (started_after, started_by] with no milestone announced yet."""
    q, qm = quotas.c, quota_milestones.c
    return await quotas_where(session, sa.select(quotas).where(
        q.period_start <= started_by, q.period_start > started_after,
        ~sa.exists().where(qm.org_id == q.org_id, qm.quota_id == q.quota_id),
    ).order_by(q.org_id, q.quota_id))


async def record_milestone(session: AsyncSession, org_id: str, quota_id: str, attained: Decimal,
                           reached_at: datetime) -> bool:
    """False when the quota's milestone was recorded before (by another replica or run)."""
    inserted = await session.execute(dialect_insert(session)(quota_milestones).values(
        org_id=org_id, quota_id=quota_id, attained=attained, reached_at=reached_at,
    ).on_conflict_do_nothing(index_elements=["org_id", "quota_id"]))
    return rows_affected(inserted) == 1


# ------------------------------------------------------------------ forecast snapshots
@dataclass(frozen=True)
class Snapshot:
    snapshot_id: str
    period: str
    period_start: datetime
    period_end: datetime
    scope: str
    scope_id: str  # "" for the org
    currency: str | None
    won_so_far: Decimal
    weighted_by_stage: Decimal
    weighted_by_history: Decimal
    best_case: Decimal


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(row.snapshot_id, row.period, row.period_start, row.period_end, row.scope, row.scope_id,
                    row.currency, row.won_so_far, row.weighted_by_stage, row.weighted_by_history, row.best_case)


async def insert_snapshot(session: AsyncSession, values: Mapping[str, object]) -> bool:
    """False when that scope's forecast of the period was frozen before (it is kept)."""
    result = await session.execute(dialect_insert(session)(forecast_snapshots).values(**values).on_conflict_do_nothing(
        index_elements=["org_id", "period", "period_start", "scope", "scope_id"]))
    return rows_affected(result) == 1


async def closed_snapshots(session: AsyncSession, org_id: str, period: str, scope: str, now: datetime,
                           scope_id: str | None = None) -> list[Snapshot]:
    """The scope's snapshots of periods ended by `now`, by period start and scope id."""
    fs = forecast_snapshots.c
    query = (sa.select(forecast_snapshots).where(fs.org_id == org_id, fs.period == period, fs.scope == scope,
                                                 fs.period_end <= now).order_by(fs.period_start, fs.scope_id))
    if scope_id is not None:
        query = query.where(fs.scope_id == scope_id)
    return [_snapshot(r) for r in (await session.execute(query)).all()]


async def list_snapshots(session: AsyncSession, org_id: str, period: str | None, after: str | None,
                         limit: int) -> list[Snapshot]:
    fs = forecast_snapshots.c
    query = sa.select(forecast_snapshots).where(fs.org_id == org_id)
    if period is not None:
        query = query.where(fs.period == period)
    if after:
        query = query.where(fs.snapshot_id > after)
    return [_snapshot(r) for r in (await session.execute(query.order_by(fs.snapshot_id).limit(limit))).all()]


async def orgs_with_leads(session: AsyncSession) -> list[str]:
    return [r[0] for r in (await session.execute(sa.select(m_leads.c.org_id).distinct())).all()]


async def org_forecast_frozen(session: AsyncSession, org_id: str, period: str, start: datetime) -> bool:
    fs = forecast_snapshots.c
    found = (await session.execute(sa.select(sa.func.count()).select_from(forecast_snapshots).where(
        fs.org_id == org_id, fs.period == period, fs.period_start == start, fs.scope == "org"))).scalar_one()
    return bool(found)


# ------------------------------------------------------------------ reporting currency and exchange rates
@dataclass(frozen=True)
class ReportingCurrency:
    currency: str
    version: int


async def reporting_currency(session: AsyncSession, org_id: str, *, for_update: bool = False
                             ) -> ReportingCurrency | None:
    """The org's reporting currency as set (None: never set), locked for an update with `for_update`."""
    query = sa.select(org_currency.c.currency, org_currency.c.version).where(org_currency.c.org_id == org_id)
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    return None if row is None else ReportingCurrency(row.currency, row.version)


async def insert_reporting_currency(session: AsyncSession, org_id: str, currency: str, now: datetime) -> bool:
    """The org's first setting (version 1); False when another one committed meanwhile."""
    insert = dialect_insert(session)(org_currency).values(org_id=org_id, currency=currency, version=1,
                                                          updated_at=now)
    return rows_affected(await session.execute(insert.on_conflict_do_nothing(index_elements=["org_id"]))) == 1


async def update_reporting_currency(session: AsyncSession, org_id: str, currency: str, version: int,
                                    now: datetime) -> None:
    await session.execute(sa.update(org_currency).where(org_currency.c.org_id == org_id).values(
        currency=currency, version=version, updated_at=now))


async def rates(session: AsyncSession, org_id: str, base: str | None = None, quote: str | None = None
                ) -> list[Rate]:
    """The org's dated rates (of one base or quote currency), by pair and day."""
    r = exchange_rates.c
    query = sa.select(r.base_currency, r.quote_currency, r.valid_from, r.rate).where(r.org_id == org_id)
    for column, value in ((r.base_currency, base), (r.quote_currency, quote)):
        if value is not None:
            query = query.where(column == value)
    rows = await session.execute(query.order_by(r.base_currency, r.quote_currency, r.valid_from))
    return [Rate(b, q, d, Decimal(v)) for b, q, d, v in rows]


async def rate_on(session: AsyncSession, org_id: str, base: str, quote: str, valid_from: date) -> Decimal | None:
    """The pair's rate stored for exactly that day, if any."""
    r = exchange_rates.c
    found = (await session.execute(sa.select(r.rate).where(
        r.org_id == org_id, r.base_currency == base, r.quote_currency == quote,
        r.valid_from == valid_from))).scalar_one_or_none()
    return None if found is None else Decimal(found)


async def store_rate(session: AsyncSession, org_id: str, rate: Rate, now: datetime) -> None:
    """Insert the pair's rate of that day, or replace it."""
    insert = dialect_insert(session)(exchange_rates).values(
        org_id=org_id, base_currency=rate.base, quote_currency=rate.quote, valid_from=rate.valid_from,
        rate=rate.rate, updated_at=now)
    await session.execute(insert.on_conflict_do_update(
        index_elements=["org_id", "base_currency", "quote_currency", "valid_from"],
        set_={"rate": rate.rate, "updated_at": now}))


# ------------------------------------------------------------------ the reports' reads
# Reports are a few large sorts and aggregates: JIT compilation costs more than it saves here, and a sort of a few
# hundred thousand stays should stay in memory. Every connection of the service runs with these (the bootstrap's
# ServiceDefinition.database_settings: set once per connection), not only a report's transaction: the rest of
# the service's statements (the projector's, by index) do not come near either limit.
REPORT_SETTINGS = {"jit": "off", "work_mem": "64MB"}
# What the driver raises when the server went away or is shutting down: an outage (503, retried), not a bug, as
# SQLAlchemy reports it for its own statements.
CONNECTION_LOST = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                   asyncpg.exceptions.OperatorInterventionError)
# session.info's key for the driver's connection a report reads on (reports.fetch and the rollups' reads use it as
# it is, instead of asking the session for it again on every statement).
REPORT_CONNECTION = "metrics.report_connection"


@asynccontextmanager
async def report_reads(session: AsyncSession) -> AsyncIterator[None]:
    """PostgreSQL: the session's statements, until the end of the block, each on its own (a report only reads:
    `reads_outside_a_transaction`), its driver connection kept for them (REPORT_CONNECTION)."""
    connection = await reads_outside_a_transaction(session)
    session.info[REPORT_CONNECTION] = (await connection.get_raw_connection()).driver_connection
    try:
        yield
    finally:
        del session.info[REPORT_CONNECTION]


# ------------------------------------------------------------------ the event log's bookkeeping
async def pending_events(session: AsyncSession, org_id: str | None = None) -> int:
    """Logged events not applied to the read models yet (of one org, or all)."""
    query = sa.select(sa.func.count()).select_from(event_log).where(sa.not_(event_log.c.projected))
    if org_id is not None:
        query = query.where(event_log.c.org_id == org_id)
    return int((await session.execute(query)).scalar_one())
