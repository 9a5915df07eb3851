"""What the event handlers keep of other services' events: deals (lead snapshots and assignments) with their
outcomes, the rep directory's copy, quotas, the org's reporting currency and its dated exchange rates.

Each write is idempotent on its own key and keeps the newest version where events carry one, so a redelivery
or an older event arriving late changes nothing. No business rules here: the handlers decide what to write."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected
from salesflow_shared.inbox import dialect_insert, dialect_name, per_dialect

from ..orm import deal_outcomes, deals, exchange_rates, org_currency, payees, quotas
from . import locked_prior


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
    # Read with the deal (see `lock_deal`): whether it has a win, and a win whose closer is not known yet.
    has_wins: bool = False
    has_wins_without_closer: bool = False


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


_DEAL_KEY = (deals.c.org_id == sa.bindparam("org")) & (deals.c.lead_id == sa.bindparam("lead"))
_DEAL_COLUMNS = [c for c in deals.columns if c.name not in ("org_id", "updated_at")]


def _wins_of_deal(*conditions: Any) -> Any:
    return sa.exists().where(deal_outcomes.c.org_id == deals.c.org_id, deal_outcomes.c.lead_id == deals.c.lead_id,
                             deal_outcomes.c.kind == "won", *conditions)


# The deal, locked, with what its handlers need to know of its outcomes (so they skip writes that change nothing).
_LOCK_DEAL = sa.select(*_DEAL_COLUMNS, _wins_of_deal().label("has_wins"),
                       _wins_of_deal(deal_outcomes.c.owner_id.is_(None)).label("has_wins_without_closer"),
                       ).where(_DEAL_KEY).with_for_update(of=deals)
_ADD_DEAL = per_dialect(lambda insert: insert(deals).values(
    org_id=sa.bindparam("org"), lead_id=sa.bindparam("lead"), updated_at=sa.bindparam("now"),
).on_conflict_do_nothing(index_elements=["org_id", "lead_id"]))
_SNAPSHOT_VALUES = ("lead_version", "product_line", "company_key", "value", "currency", "updated_at")
# A new deal with its first snapshot and owner, when it has no row yet (RETURNING: whether it was new).
_ADD_DEAL_WITH_SNAPSHOT = per_dialect(lambda insert: insert(deals).values(
    org_id=sa.bindparam("org"), lead_id=sa.bindparam("lead"),
    **{name: sa.bindparam(f"new_{name}") for name in (*_SNAPSHOT_VALUES, "owner_id", "team_id")},
).on_conflict_do_nothing(index_elements=["org_id", "lead_id"]).returning(deals.c.lead_id))
_SAVE_SNAPSHOT = sa.update(deals).where(_DEAL_KEY).values({name: sa.bindparam(f"new_{name}")
                                                           for name in _SNAPSHOT_VALUES})
_SAVE_SNAPSHOT_AND_OWNER = sa.update(deals).where(_DEAL_KEY).values(
    {name: sa.bindparam(f"new_{name}") for name in (*_SNAPSHOT_VALUES, "owner_id", "team_id")})
_SAVE_ASSIGNMENT = sa.update(deals).where(_DEAL_KEY).values(
    {name: sa.bindparam(f"new_{name}") for name in ("owner_id", "team_id", "assigned_version", "updated_at")})
# The same over a known deal's older assignment only (the row is locked by the update itself); RETURNING what
# the handler goes on with: whether the deal has wins without a closer (no row: nothing written).
_SAVE_NEWER_ASSIGNMENT = _SAVE_ASSIGNMENT.where(deals.c.assigned_version < sa.bindparam("newer_than")).returning(
    _wins_of_deal(deal_outcomes.c.owner_id.is_(None)).label("has_wins_without_closer"))
# A known deal's older snapshot written over in one statement (PostgreSQL): the row as it was (`locked_prior`) is
# RETURNED, with what `lock_deal` tells of its wins. The owner is written too while no LeadAssigned has been seen
# (assigned_version 0), as `save_snapshot(owner=...)` does. No row: nothing written (a deal not known yet, or one
# holding this snapshot or a newer one).
_PRIOR_DEAL = locked_prior(deals, "prior_deal")


def _owner_until_assigned(column: sa.Column[Any]) -> Any:
    return sa.case((_PRIOR_DEAL.c.assigned_version == 0, sa.bindparam(f"new_{column.name}", type_=column.type)),
                   else_=column)


_SAVE_NEWER_SNAPSHOT = sa.update(deals).where(
    _DEAL_KEY, deals.c.org_id == _PRIOR_DEAL.c.org_id, deals.c.lead_id == _PRIOR_DEAL.c.lead_id,
    deals.c.lead_version < sa.bindparam("newer_than"),
).values({**{name: sa.bindparam(f"new_{name}") for name in _SNAPSHOT_VALUES},
           "owner_id": _owner_until_assigned(deals.c.owner_id), "team_id": _owner_until_assigned(deals.c.team_id)}
          ).returning(
    *(_PRIOR_DEAL.c[c.name] for c in _DEAL_COLUMNS), _wins_of_deal().label("has_wins"),
    _wins_of_deal(deal_outcomes.c.owner_id.is_(None)).label("has_wins_without_closer"))


async def lock_deal(session: AsyncSession, org_id: str, lead_id: str, now: datetime) -> Deal:
    """The deal, created empty if no event has named it yet, locked until the transaction ends."""
    key = {"org": org_id, "lead": lead_id}
    row = (await session.execute(_LOCK_DEAL, key)).mappings().first()
    if row is None:
        await session.execute(_ADD_DEAL[dialect_name(session)], {**key, "now": now})
        row = (await session.execute(_LOCK_DEAL, key)).mappings().one()
    return _deal(row)


def _deal(row: Any) -> Deal:
    return Deal(**{**row, "has_wins": bool(row["has_wins"]),
                   "has_wins_without_closer": bool(row["has_wins_without_closer"])})


def _snapshot_values(snapshot: DealSnapshot, now: datetime) -> dict[str, object]:
    return {"new_lead_version": snapshot.lead_version, "new_product_line": snapshot.product_line,
            "new_company_key": snapshot.company_key, "new_value": snapshot.value, "new_currency": snapshot.currency,
            "new_updated_at": now}


async def add_deal(session: AsyncSession, org_id: str, lead_id: str, snapshot: DealSnapshot,
                   owner: tuple[str | None, str | None], now: datetime) -> bool:
    """A deal no event has named yet, with its first snapshot and owner (owner, team); False (and nothing
    written) when the deal exists."""
    added = await session.execute(_ADD_DEAL_WITH_SNAPSHOT[dialect_name(session)], {
        "org": org_id, "lead": lead_id, **_snapshot_values(snapshot, now), "new_owner_id": owner[0],
        "new_team_id": owner[1]})
    return added.first() is not None


async def save_snapshot(session: AsyncSession, org_id: str, lead_id: str, snapshot: DealSnapshot, now: datetime,
                        *, owner: tuple[str | None, str | None] | None = None) -> None:
    """Store a newer lead snapshot; `owner` (owner, team) too when no LeadAssigned has been seen yet."""
    values = _snapshot_values(snapshot, now)
    if owner is None:
        await session.execute(_SAVE_SNAPSHOT, {"org": org_id, "lead": lead_id, **values})
    else:
        await session.execute(_SAVE_SNAPSHOT_AND_OWNER, {"org": org_id, "lead": lead_id, **values,
                                                         "new_owner_id": owner[0], "new_team_id": owner[1]})


async def save_newer_snapshot(session: AsyncSession, org_id: str, lead_id: str, snapshot: DealSnapshot,
                              owner: tuple[str | None, str | None], now: datetime) -> Deal | None:
    """`lock_deal` and `save_snapshot` in one statement when the deal is known with an older snapshot: the deal
    as it was before; `owner` (owner, team) is stored too while no LeadAssigned has been seen. None (and nothing
    written) for a deal not known yet or holding this snapshot or a newer one (`lock_deal` tells which), and
    always on SQLite, whose UPDATE ... FROM cannot return the row it joined."""
    if dialect_name(session) == "sqlite":
        return None
    row = (await session.execute(_SAVE_NEWER_SNAPSHOT, {
        "org": org_id, "lead": lead_id, **_snapshot_values(snapshot, now), "new_owner_id": owner[0],
        "new_team_id": owner[1], "newer_than": snapshot.lead_version})).mappings().first()
    return None if row is None else _deal(row)


async def save_assignment(session: AsyncSession, org_id: str, lead_id: str, owner_id: str | None,
                          team_id: str | None, assigned_version: int, now: datetime) -> None:
    await session.execute(_SAVE_ASSIGNMENT, {"org": org_id, "lead": lead_id, "new_owner_id": owner_id,
                                             "new_team_id": team_id, "new_assigned_version": assigned_version,
                                             "new_updated_at": now})


async def save_newer_assignment(session: AsyncSession, org_id: str, lead_id: str, owner_id: str | None,
                                team_id: str | None, assigned_version: int, now: datetime) -> bool | None:
    """`save_assignment` in one statement when the deal is known with an older assignment: whether it has wins
    without a closer; None (and nothing written) for a deal not known yet or holding this assignment or a newer
    one (`lock_deal` tells which)."""
    row = (await session.execute(_SAVE_NEWER_ASSIGNMENT, {
        "org": org_id, "lead": lead_id, "new_owner_id": owner_id, "new_team_id": team_id,
        "new_assigned_version": assigned_version, "new_updated_at": now, "newer_than": assigned_version})).first()
    return None if row is None else bool(row.has_wins_without_closer)


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
