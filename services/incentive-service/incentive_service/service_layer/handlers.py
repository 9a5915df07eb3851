"""Event handlers, registered in one explicit map (each runs in its own transaction with the inbox).

incentive-service keeps its own copy of what commissions are computed from: deals (lead snapshots and
assignments) with every outcome (won, lost, reopened), the rep directory, quotas, the org's currency and its
dated exchange rates. Outcomes are stored one row per event (unique by event id), so a redelivery adds nothing
and the order of arrival does not matter: who is credited and what is clawed back is decided from the whole
history when a statement is computed. Each change queues the statements it affects for recalculation.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from salesflow_shared.clock import Clock
from salesflow_shared.consumer import EventHandlers
from salesflow_shared.db import rows_affected
from salesflow_shared.events import (
    Envelope,
    ExchangeRateSetV1,
    LeadAssignedV1,
    LeadCreatedV1,
    LeadLostV1,
    LeadReopenedV1,
    LeadUpdatedV1,
    LeadWonV1,
    QuotaRemovedV1,
    QuotaSetV1,
    RepCreatedV1,
    RepDeactivatedV1,
    ReportingCurrencySetV1,
    RepUpdatedV1,
)
from salesflow_shared.inbox import dialect_insert
from salesflow_shared.uow import UnitOfWork

from ..adapters.orm import deal_outcomes, deals, exchange_rates, org_currency, payees, quotas
from . import recalculation


def company_key(lead: LeadCreatedV1 | LeadUpdatedV1) -> str | None:
    """What identifies the customer for "new logo" SPIFFs: its id, else its domain, else its name."""
    company = lead.lead.company
    for value in (company.company_id, company.domain, company.name):
        if value and value.strip():
            return value.strip().lower()
    return None


async def _deal_row(uow: UnitOfWork, org_id: str, lead_id: str, now: datetime) -> dict[str, Any]:
    insert = dialect_insert(uow.session)
    await uow.session.execute(insert(deals).values(org_id=org_id, lead_id=lead_id, updated_at=now)
                              .on_conflict_do_nothing(index_elements=["org_id", "lead_id"]))
    row = (await uow.session.execute(sa.select(deals).where(deals.c.org_id == org_id, deals.c.lead_id == lead_id)
                                     .with_for_update())).mappings().one()
    return dict(row)


async def _fill_unknown_closer(uow: UnitOfWork, org_id: str, lead_id: str, owner_id: str | None,
                               team_id: str | None, now: datetime) -> None:
    """A win that arrived before any owner was known (events in another order, or a LeadWon without owner_id)
    credits the owner learnt afterwards; a win that named its closer keeps it."""
    if owner_id is None:
        return
    result = await uow.session.execute(sa.update(deal_outcomes).where(
        deal_outcomes.c.org_id == org_id, deal_outcomes.c.lead_id == lead_id, deal_outcomes.c.kind == "won",
        deal_outcomes.c.owner_id.is_(None)).values(owner_id=owner_id, team_id=team_id))
    if rows_affected(result):
        await recalculation.queue_for_lead(uow, org_id, lead_id, "credit_changed", now)


def make_event_handlers(clock: Clock) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on(LeadCreatedV1)
    @handlers.on(LeadUpdatedV1)
    async def on_lead_snapshot(data: LeadCreatedV1 | LeadUpdatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        lead = data.lead
        row = await _deal_row(uow, envelope.org_id, lead.lead_id, clock.now())
        if envelope.subject_version <= row["lead_version"]:
            return  # stale: a newer snapshot is already known
        values = {"lead_version": envelope.subject_version, "product_line": lead.product_line,
                  "company_key": company_key(data), "value": lead.value, "currency": lead.currency,
                  "updated_at": clock.now()}
        if row["assigned_version"] == 0:  # until a LeadAssigned arrives, lead-service's owner is the best known
            values.update(owner_id=lead.owner_id, team_id=lead.team_id)
            await _fill_unknown_closer(uow, envelope.org_id, lead.lead_id, lead.owner_id, lead.team_id, clock.now())
        await uow.session.execute(sa.update(deals).where(deals.c.org_id == envelope.org_id,
                                                         deals.c.lead_id == lead.lead_id).values(**values))
        if row["product_line"] != lead.product_line or row["company_key"] != values["company_key"]:
            await recalculation.queue_for_lead(uow, envelope.org_id, lead.lead_id, "credit_changed", clock.now())

    @handlers.on(LeadAssignedV1)
    async def on_lead_assigned(data: LeadAssignedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        row = await _deal_row(uow, envelope.org_id, data.lead_id, clock.now())
        if envelope.subject_version <= row["assigned_version"]:
            return
        await uow.session.execute(sa.update(deals).where(deals.c.org_id == envelope.org_id,
                                                         deals.c.lead_id == data.lead_id).values(
            owner_id=data.owner_id, team_id=data.team_id, assigned_version=envelope.subject_version,
            updated_at=clock.now()))
        await _fill_unknown_closer(uow, envelope.org_id, data.lead_id, data.owner_id, data.team_id, clock.now())

    @handlers.on(LeadWonV1)
    @handlers.on(LeadLostV1)
    @handlers.on(LeadReopenedV1)
    async def on_outcome(data: LeadWonV1 | LeadLostV1 | LeadReopenedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        row = await _deal_row(uow, envelope.org_id, data.lead_id, clock.now())
        values: dict[str, object] = {"org_id": envelope.org_id, "event_id": str(envelope.id),
                                     "lead_id": data.lead_id}
        if isinstance(data, LeadWonV1):
            # The closer is the owner at the win: the event's, else the one this service knows.
            values.update(kind="won", at=data.won_at, value=data.value if data.value is not None else row["value"],
                          currency=data.currency or row["currency"], owner_id=data.owner_id or row["owner_id"],
                          team_id=row["team_id"])
        elif isinstance(data, LeadLostV1):
            values.update(kind="lost", at=data.lost_at, owner_id=data.owner_id)
        else:
            values.update(kind="reopened", at=data.reopened_at)
        insert = dialect_insert(uow.session)
        await uow.session.execute(insert(deal_outcomes).values(**values)
                                  .on_conflict_do_nothing(index_elements=["org_id", "event_id"]))
        await recalculation.queue_for_lead(uow, envelope.org_id, data.lead_id, "credit_changed", clock.now())

    @handlers.on(RepCreatedV1)
    @handlers.on(RepUpdatedV1)
    @handlers.on(RepDeactivatedV1)
    async def on_rep(data: RepCreatedV1 | RepUpdatedV1 | RepDeactivatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        rep = data.rep
        insert = dialect_insert(uow.session)
        values = {"name": rep.name, "email": rep.email, "team_ids": rep.team_ids, "active": rep.active,
                  "directory_version": envelope.subject_version, "updated_at": clock.now()}
        await uow.session.execute(insert(payees).values(org_id=envelope.org_id, participant_id=rep.rep_id, **values)
                                  .on_conflict_do_update(index_elements=["org_id", "participant_id"], set_=values,
                                                         where=payees.c.directory_version < envelope.subject_version))

    @handlers.on(QuotaSetV1)
    async def on_quota_set(data: QuotaSetV1, envelope: Envelope, uow: UnitOfWork) -> None:
        insert = dialect_insert(uow.session)
        values = {"scope": data.scope, "scope_id": data.scope_id, "period": data.period,
                  "period_start": data.period_start, "period_end": data.period_end, "amount": data.amount,
                  "currency": data.currency.upper(), "version": data.version, "removed": False}
        await uow.session.execute(insert(quotas).values(org_id=envelope.org_id, quota_id=data.quota_id, **values)
                                  .on_conflict_do_update(index_elements=["org_id", "quota_id"], set_=values,
                                                         where=quotas.c.version < data.version))
        if data.scope == "rep":
            await recalculation.queue_for_participant(uow, envelope.org_id, data.scope_id, data.period_start,
                                                      data.period_end, "quota_changed", clock.now())

    @handlers.on(QuotaRemovedV1)
    async def on_quota_removed(data: QuotaRemovedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        row = (await uow.session.execute(sa.update(quotas).where(
            quotas.c.org_id == envelope.org_id, quotas.c.quota_id == data.quota_id).values(removed=True)
            .returning(quotas.c.scope, quotas.c.scope_id, quotas.c.period_start, quotas.c.period_end))).first()
        if row is not None and row.scope == "rep":
            await recalculation.queue_for_participant(uow, envelope.org_id, row.scope_id, row.period_start,
                                                      row.period_end, "quota_changed", clock.now())

    @handlers.on(ReportingCurrencySetV1)
    async def on_reporting_currency(data: ReportingCurrencySetV1, envelope: Envelope, uow: UnitOfWork) -> None:
        insert = dialect_insert(uow.session)
        await uow.session.execute(insert(org_currency).values(org_id=envelope.org_id,
                                                              reporting_currency=data.currency.upper())
                                  .on_conflict_do_update(index_elements=["org_id"],
                                                         set_={"reporting_currency": data.currency.upper()}))
        await recalculation.queue_open_statements(uow, envelope.org_id, None, "rate_changed", clock.now())

    @handlers.on(ExchangeRateSetV1)
    async def on_exchange_rate(data: ExchangeRateSetV1, envelope: Envelope, uow: UnitOfWork) -> None:
        insert = dialect_insert(uow.session)
        await uow.session.execute(insert(exchange_rates).values(
            org_id=envelope.org_id, base_currency=data.base_currency.upper(),
            quote_currency=data.quote_currency.upper(), valid_from=data.valid_from, rate=data.rate,
        ).on_conflict_do_update(index_elements=["org_id", "base_currency", "quote_currency", "valid_from"],
                                set_={"rate": data.rate}))
        await recalculation.queue_open_statements(uow, envelope.org_id, data.valid_from, "rate_changed", clock.now())

    return handlers
