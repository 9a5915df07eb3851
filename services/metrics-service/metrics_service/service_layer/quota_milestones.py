"""QuotaReached: telling the rest of Salesflow, once per quota, that a rep or team reached its quota.

Attainment is the quota-attainment report's (GET /v1/reports/quota-attainment): value won in the quota's
period by the rep (lead owner) or team, `reports.won_between`, against the quota's amount; the quota is
reached when that value is at least the amount (attainment_pct >= 100). A worker looks at the quotas of the
periods under way and of those that ended less than `lookback_days` ago (a win may be logged late; it still
counts for the period it was won in).

Exactly once, with any number of replicas: the `quota_milestones` row of the quota is inserted with
ON CONFLICT DO NOTHING in the transaction that writes QuotaReached to the outbox, so a second replica (or the
next run) inserts nothing and publishes nothing. A quota is announced once even if a later loss or a raised
amount takes it below 100 % again.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from salesflow_shared.app import Worker, run_periodically
from salesflow_shared.clock import Clock
from salesflow_shared.events import QuotaReachedV1
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain import formulas
from ..domain.exchange import Converted
from ..domain.periods import as_utc, period_bounds, to_ts
from .reports.revenue import won_between

log = structlog.get_logger(__name__)


def _bounds(quota: repository.Quota) -> tuple[datetime, datetime]:
    day = quota.period_start
    return period_bounds(quota.period, datetime(day.year, day.month, day.day, tzinfo=UTC))


async def unannounced_quotas(uow: UnitOfWork, now: datetime, lookback_days: int) -> list[repository.Quota]:
    """Quotas whose period has started and ended less than `lookback_days` ago, not announced yet."""
    ended_after = now - timedelta(days=lookback_days)
    # no period is longer than a year
    rows = await repository.unannounced_quotas(uow.session, now.date(), (ended_after - timedelta(days=366)).date())
    return [r for r in rows if _bounds(r)[1] > ended_after]


async def announce_org(uow: UnitOfWork, org_id: str, candidates: list[repository.Quota], now: datetime) -> int:
    """Publish QuotaReached for each reached quota among the org's candidates (the caller commits)."""
    won_cache: dict[tuple[str, float, float, str], dict[str, Converted]] = {}
    announced = 0
    for quota in candidates:
        start, end = _bounds(quota)
        key = (quota.scope, to_ts(start), to_ts(end), quota.currency)
        if key not in won_cache:  # in the quota's currency, as the quota-attainment report compares it
            won_cache[key] = await won_between(uow.session, org_id, *key)
        found = won_cache[key].get(quota.scope_id)
        attained = found.amount if found is not None else Decimal(0)
        if attained < quota.amount:
            continue
        if not await repository.record_milestone(uow.session, org_id, quota.quota_id, attained, now):
            continue  # another replica announced it first
        uow.publish(QuotaReachedV1(
            quota_id=quota.quota_id, scope=quota.scope, scope_id=quota.scope_id, period=quota.period,
            period_start=quota.period_start, amount=quota.amount, currency=quota.currency,
            attained=Decimal(formulas.money(attained) or 0), attainment_pct=formulas.pct(attained, quota.amount) or 0.0,
            reached_at=now), org_id=org_id, subject_id=quota.quota_id, occurred_at=now)
        announced += 1
    return announced


async def announce_reached_quotas(context: Any, now: datetime, lookback_days: int) -> int:
    """One run of the worker: every org's newly reached quotas announced; returns how many."""
    now = as_utc(now)
    async with context.uow() as uow:
        candidates = await unannounced_quotas(uow, now, lookback_days)
    by_org: dict[str, list[repository.Quota]] = {}
    for quota in candidates:
        by_org.setdefault(quota.org_id, []).append(quota)
    announced = 0
    for org_id, org_quotas in by_org.items():
        async with context.uow() as uow:
            announced += await announce_org(uow, org_id, org_quotas, now)
            await uow.commit()
    return announced


def quota_milestone_worker(clock: Clock, interval_s: float, lookback_days: int) -> Worker:
    """Announce newly reached quotas, checking every `interval_s`."""
    async def quota_reached_worker(context: Any) -> None:
        async def tick() -> bool:
            if count := await announce_reached_quotas(context, clock.now(), lookback_days):
                log.info("quotas_reached", quotas=count)
            return False
        await run_periodically(context, tick, interval_s, name="quota_milestones")
    return quota_reached_worker
