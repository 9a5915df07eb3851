"""Quotas, set by an admin for a rep or team and a period: created, changed and removed, each change announced
(QuotaSet with the quota as it now is, QuotaRemoved) through the outbox in the change's transaction.

The use cases take the unit of work and write without committing: the caller stores its idempotent answer in
the same transaction and commits.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from salesflow_shared.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from salesflow_shared.events import QuotaRemovedV1, QuotaSetV1
from salesflow_shared.preconditions import check_if_match, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..domain.periods import Period, period_bounds, period_start


def check_period_start(period: Period, first_day: date) -> None:
    """A quota's period starts on the first day of its month, quarter or year."""
    if not 1900 <= first_day.year <= 9000:
        raise ValidationFailed.single("period_start", "must be between the years 1900 and 9000")
    moment = datetime(first_day.year, first_day.month, first_day.day)
    if period_start(period, moment).date() != first_day:
        raise ValidationFailed.single("period_start", f"must be the first day of a {period}")


def quota_etag(row: repository.Quota) -> str:
    return strong_etag(f"{row.quota_id}:{row.version}")


def _publish_quota(uow: UnitOfWork, row: repository.Quota) -> None:
    """QuotaSet with the quota as it now is (its version: the newest wins downstream)."""
    start = datetime(row.period_start.year, row.period_start.month, row.period_start.day)
    _, end = period_bounds(row.period, start)
    uow.publish(QuotaSetV1(quota_id=row.quota_id, scope=row.scope, scope_id=row.scope_id, period=row.period,
                           period_start=row.period_start, period_end=end.date(), amount=row.amount,
                           currency=row.currency, version=row.version),
                org_id=row.org_id, subject_id=row.quota_id, subject_version=row.version)


async def _quota(uow: UnitOfWork, org_id: str, quota_id: str) -> repository.Quota:
    row = await repository.get_quota(uow.session, org_id, quota_id)
    if row is None:
        raise NotFound(f"quota {quota_id} not found")
    return row


async def create_quota(uow: UnitOfWork, org_id: str, values: Mapping[str, Any]) -> repository.Quota:
    """A quota (scope, scope_id, period, period_start, amount, currency) at version 1; one per scope and
    period (409 for a second)."""
    check_period_start(values["period"], values["period_start"])
    now = uow.clock.now()
    row_values = {"quota_id": str(uuid.uuid4()), "org_id": org_id, **values, "version": 1, "created_at": now,
                  "updated_at": now}
    if not await repository.insert_quota(uow.session, row_values):
        raise Conflict("a quota for this scope and period already exists")
    row = await _quota(uow, org_id, row_values["quota_id"])
    _publish_quota(uow, row)
    return row


async def change_quota(uow: UnitOfWork, org_id: str, quota_id: str, changes: Mapping[str, Any], *,
                       if_match: str | None) -> repository.Quota:
    """Change the amount or currency of the quota the caller read (`if_match`: its ETag); its version goes up."""
    row = await _quota(uow, org_id, quota_id)
    check_if_match(if_match, quota_etag(row), what="quota")
    if not await repository.update_quota(uow.session, row, dict(changes), uow.clock.now()):
        raise PreconditionFailed("the quota changed since you read it")
    row = await _quota(uow, org_id, quota_id)
    _publish_quota(uow, row)
    return row


async def remove_quota(uow: UnitOfWork, org_id: str, quota_id: str) -> None:
    row = await _quota(uow, org_id, quota_id)
    await repository.delete_quota(uow.session, org_id, quota_id)
    uow.publish(QuotaRemovedV1(quota_id=quota_id), org_id=org_id, subject_id=quota_id,
                subject_version=row.version + 1)
