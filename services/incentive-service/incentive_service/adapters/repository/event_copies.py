"""What the event handlers keep of other services' events: deals (lead snapshots and assignments) with their
outcomes, the rep directory's copy, quotas, the org's reporting currency and its dated exchange rates.

Each write is idempotent on its own key and keeps the newest version where events carry one, so a redelivery
or an older event arriving late changes nothing. No business rules here: the handlers decide what to write."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected
from salesflow_shared.inbox import dialect_insert

from ..orm import deal_outcomes, deals, exchange_rates, org_currency, payees, quotas


@dataclass(frozen=True)
class Deal:
    """This service's copy of a lead, as the commission rules need it."""
    lead_id: str
    lead_version: int
    product_line: str | None
    company_key: str | None
    value: Decimal | None
    currency: str | None
    owner_id: str | None
    team_id: str | None
    assigned_version: int


@dataclass(frozen=True)
class DealSnapshot:
    """What a lead snapshot (LeadCreated/LeadUpdated) says of a deal."""
    lead_version: int
    product_line: str | None
    company_key: str | None
    value: Decimal | None
    currency: str | None


@dataclass(frozen=True)
class DealOutcome:
    """One won, lost or reopened event of a deal (unique by the event's id)."""
    event_id: str
    lead_id: str
    kind: str
    at: datetime
    value: Decimal | None = None
    currency: str | None = None
    owner_id: str | None = None
    team_id: str | None = None


@dataclass(frozen=True)
class RemovedQuota:
    scope: str
    scope_id: str
    period_start: date
    period_end: date


_select_deal_for_update = (sa.select(deals).where(deals.c.org_id == sa.bindparam("org_id"),
                                                  deals.c.lead_id == sa.bindparam("lead_id")).with_for_update())


async def lock_deal(session: AsyncSession, org_id: str, lead_id: str, now: datetime) -> Deal:
    """The deal, created empty if no event has named it yet, locked until the transaction ends."""
    insert = dialect_insert(session)
    await session.execute(insert(deals).values(org_id=org_id, lead_id=lead_id, updated_at=now)
                          .on_conflict_do_nothing(index_elements=["org_id", "lead_id"]))
    row = (await session.execute(_select_deal_for_update, {"org_id": org_id, "lead_id": lead_id})).one()
    return Deal(lead_id=row.lead_id, lead_version=row.lead_version, product_line=row.product_line,
                company_key=row.company_key, value=row.value, currency=row.currency, owner_id=row.owner_id,
                team_id=row.team_id, assigned_version=row.assigned_version)


async def save_snapshot(session: AsyncSession, org_id: str, lead_id: str, snapshot: DealSnapshot, now: datetime,
                        *, owner: tuple[str | None, str | None] | None = None) -> None:
    """Store a newer lead snapshot; `owner` (owner, team) too when no LeadAssigned has been seen yet."""
    values: dict[str, object] = {"lead_version": snapshot.lead_version, "product_line": snapshot.product_line,
                                 "company_key": snapshot.company_key, "value": snapshot.value,
                                 "currency": snapshot.currency, "updated_at": now}
    if owner is not None:
        values.update(owner_id=owner[0], team_id=owner[1])
    await session.execute(sa.update(deals).where(deals.c.org_id == org_id, deals.c.lead_id == lead_id)
                          .values(values))


async def save_assignment(session: AsyncSession, org_id: str, lead_id: str, owner_id: str | None,
                          team_id: str | None, assigned_version: int, now: datetime) -> None:
    await session.execute(sa.update(deals).where(deals.c.org_id == org_id, deals.c.lead_id == lead_id).values(
        owner_id=owner_id, team_id=team_id, assigned_version=assigned_version, updated_at=now))


async def credit_wins_without_closer(session: AsyncSession, org_id: str, lead_id: str, owner_id: str,
                                     team_id: str | None) -> bool:
    """Name the closer of the deal's wins that arrived before any owner was known; True when one changed."""
    result = await session.execute(sa.update(deal_outcomes).where(
        deal_outcomes.c.org_id == org_id, deal_outcomes.c.lead_id == lead_id, deal_outcomes.c.kind == "won",
        deal_outcomes.c.owner_id.is_(None)).values(owner_id=owner_id, team_id=team_id))
    return bool(rows_affected(result))


async def record_outcome(session: AsyncSession, org_id: str, outcome: DealOutcome) -> None:
    """Store the outcome once: a redelivered event (same id) adds nothing."""
    insert = dialect_insert(session)
    await session.execute(insert(deal_outcomes).values(
        org_id=org_id, event_id=outcome.event_id, lead_id=outcome.lead_id, kind=outcome.kind, at=outcome.at,
        value=outcome.value, currency=outcome.currency, owner_id=outcome.owner_id, team_id=outcome.team_id,
    ).on_conflict_do_nothing(index_elements=["org_id", "event_id"]))


async def save_directory_entry(session: AsyncSession, org_id: str, participant_id: str, *, name: str | None,
                               email: str | None, team_ids: list[str], active: bool, directory_version: int,
                               now: datetime) -> None:
    """The rep directory's copy of a payee, unless a newer directory version is already stored."""
    insert = dialect_insert(session)
    values = {"name": name, "email": email, "team_ids": team_ids, "active": active,
              "directory_version": directory_version, "updated_at": now}
    await session.execute(insert(payees).values(org_id=org_id, participant_id=participant_id, **values)
                          .on_conflict_do_update(index_elements=["org_id", "participant_id"], set_=values,
                                                 where=payees.c.directory_version < directory_version))


async def save_quota(session: AsyncSession, org_id: str, quota_id: str, *, scope: str, scope_id: str, period: str,
                     period_start: date, period_end: date, amount: Decimal, currency: str, version: int) -> None:
    """A quota as set, unless a newer version of it is already stored."""
    insert = dialect_insert(session)
    values = {"scope": scope, "scope_id": scope_id, "period": period, "period_start": period_start,
              "period_end": period_end, "amount": amount, "currency": currency, "version": version,
              "removed": False}
    await session.execute(insert(quotas).values(org_id=org_id, quota_id=quota_id, **values)
                          .on_conflict_do_update(index_elements=["org_id", "quota_id"], set_=values,
                                                 where=quotas.c.version < version))


async def remove_quota(session: AsyncSession, org_id: str, quota_id: str) -> RemovedQuota | None:
    """Mark the quota removed; what it covered, or None when it was never known."""
    row = (await session.execute(sa.update(quotas).where(
        quotas.c.org_id == org_id, quotas.c.quota_id == quota_id).values(removed=True)
        .returning(quotas.c.scope, quotas.c.scope_id, quotas.c.period_start, quotas.c.period_end))).first()
    return None if row is None else RemovedQuota(row.scope, row.scope_id, row.period_start, row.period_end)


async def save_reporting_currency(session: AsyncSession, org_id: str, currency: str) -> None:
    insert = dialect_insert(session)
    await session.execute(insert(org_currency).values(org_id=org_id, reporting_currency=currency)
                          .on_conflict_do_update(index_elements=["org_id"], set_={"reporting_currency": currency}))


async def save_exchange_rate(session: AsyncSession, org_id: str, base_currency: str, quote_currency: str,
                             valid_from: date, rate: Decimal) -> None:
    insert = dialect_insert(session)
    await session.execute(insert(exchange_rates).values(
        org_id=org_id, base_currency=base_currency, quote_currency=quote_currency, valid_from=valid_from, rate=rate,
    ).on_conflict_do_update(index_elements=["org_id", "base_currency", "quote_currency", "valid_from"],
                            set_={"rate": rate}))
