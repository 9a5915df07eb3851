"""Event handlers, registered in one explicit map (each runs in its own transaction with the inbox).

incentive-service keeps its own copy of what commissions are computed from: deals (lead snapshots and
assignments) with every outcome (won, lost, reopened), the rep directory, quotas, the org's currency and its
dated exchange rates. Outcomes are stored one row per event (unique by event id), so a redelivery adds nothing
and the order of arrival does not matter: who is credited and what is clawed back is decided from the whole
history when a statement is computed. Each change queues the statements it affects for recalculation.
"""
from __future__ import annotations

from datetime import datetime

from salesflow_shared.clock import Clock
from salesflow_shared.consumer import EventHandlers
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
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import event_copies as copies
from ..adapters.repository.event_copies import DealOutcome, DealSnapshot
from . import recalculation


def company_key(lead: LeadCreatedV1 | LeadUpdatedV1) -> str | None:
    """What identifies the customer for "new logo" SPIFFs: its id, else its domain, else its name."""
    company = lead.lead.company
    for value in (company.company_id, company.domain, company.name):
        if value and value.strip():
            return value.strip().lower()
    return None


async def _fill_unknown_closer(uow: UnitOfWork, has_wins_without_closer: bool, org_id: str, lead_id: str,
                               owner_id: str | None, team_id: str | None, now: datetime) -> None:
    """A win that arrived before any owner was known (events in another order, or a LeadWon without owner_id)
    credits the owner learnt afterwards; a win that named its closer keeps it."""
    if owner_id is None or not has_wins_without_closer:
        return
    if await copies.credit_wins_without_closer(uow.session, org_id, lead_id, owner_id, team_id):
        await recalculation.queue_for_lead(uow, org_id, lead_id, "credit_changed", now)


def make_event_handlers(clock: Clock) -> EventHandlers:
    handlers = EventHandlers()

    @handlers.on(LeadCreatedV1)
    @handlers.on(LeadUpdatedV1)
    async def on_lead_snapshot(data: LeadCreatedV1 | LeadUpdatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        lead = data.lead
        snapshot = DealSnapshot(lead_version=envelope.subject_version, product_line=lead.product_line,
                                company_key=company_key(data), value=lead.value, currency=lead.currency)
        if isinstance(data, LeadCreatedV1) and await copies.add_deal(
                uow.session, envelope.org_id, lead.lead_id, snapshot, (lead.owner_id, lead.team_id), clock.now()):
            return  # the lead's first event: a new deal (no outcome, no LeadAssigned yet) with this snapshot
        # Until a LeadAssigned arrives, lead-service's owner is the best known.
        owner = (lead.owner_id, lead.team_id)
        # Usually the deal is known with an older snapshot: written over in one statement (the deal as it was).
        deal = await copies.save_newer_snapshot(uow.session, envelope.org_id, lead.lead_id, snapshot, owner,
                                                clock.now())
        if deal is None:  # a deal not known yet, or a stale snapshot (or SQLite)
            deal = await copies.lock_deal(uow.session, envelope.org_id, lead.lead_id, clock.now())
            if envelope.subject_version <= deal.lead_version:
                return  # stale: a newer snapshot is already known
            await copies.save_snapshot(uow.session, envelope.org_id, lead.lead_id, snapshot, clock.now(),
                                       owner=owner if deal.assigned_version == 0 else None)
        if deal.assigned_version == 0:
            await _fill_unknown_closer(uow, deal.has_wins_without_closer, envelope.org_id, lead.lead_id,
                                       lead.owner_id, lead.team_id, clock.now())
        # A deal without a win is credited on no statement: nothing to recalculate.
        if deal.has_wins and (deal.product_line != lead.product_line or deal.company_key != snapshot.company_key):
            await recalculation.queue_for_lead(uow, envelope.org_id, lead.lead_id, "credit_changed", clock.now())

    @handlers.on(LeadAssignedV1)
    async def on_lead_assigned(data: LeadAssignedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        # Usually the deal is known with an older assignment: written over in one statement.
        has_wins_without_closer = await copies.save_newer_assignment(
            uow.session, envelope.org_id, data.lead_id, data.owner_id, data.team_id, envelope.subject_version,
            clock.now())
        if has_wins_without_closer is None:  # a deal not known yet, or a stale assignment
            deal = await copies.lock_deal(uow.session, envelope.org_id, data.lead_id, clock.now())
            if envelope.subject_version <= deal.assigned_version:
                return
            await copies.save_assignment(uow.session, envelope.org_id, data.lead_id, data.owner_id, data.team_id,
                                         envelope.subject_version, clock.now())
            has_wins_without_closer = deal.has_wins_without_closer
        await _fill_unknown_closer(uow, has_wins_without_closer, envelope.org_id, data.lead_id, data.owner_id,
                                   data.team_id, clock.now())

    @handlers.on(LeadWonV1)
    @handlers.on(LeadLostV1)
    @handlers.on(LeadReopenedV1)
    async def on_outcome(data: LeadWonV1 | LeadLostV1 | LeadReopenedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        deal = await copies.lock_deal(uow.session, envelope.org_id, data.lead_id, clock.now())
        event_id = str(envelope.id)
        if isinstance(data, LeadWonV1):
            # The closer is the owner at the win: the event's, else the one this service knows.
            outcome = DealOutcome(event_id, data.lead_id, "won", data.won_at,
                                  value=data.value if data.value is not None else deal.value,
                                  currency=data.currency or deal.currency, owner_id=data.owner_id or deal.owner_id,
                                  team_id=deal.team_id)
        elif isinstance(data, LeadLostV1):
            outcome = DealOutcome(event_id, data.lead_id, "lost", data.lost_at, owner_id=data.owner_id)
        else:
            outcome = DealOutcome(event_id, data.lead_id, "reopened", data.reopened_at)
        await copies.record_outcome(uow.session, envelope.org_id, outcome)
        await recalculation.queue_for_lead(uow, envelope.org_id, data.lead_id, "credit_changed", clock.now())

    @handlers.on(RepCreatedV1)
    @handlers.on(RepUpdatedV1)
    @handlers.on(RepDeactivatedV1)
    async def on_rep(data: RepCreatedV1 | RepUpdatedV1 | RepDeactivatedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        rep = data.rep
        await copies.save_directory_entry(uow.session, envelope.org_id, rep.rep_id, name=rep.name, email=rep.email,
                                          team_ids=rep.team_ids, active=rep.active,
                                          directory_version=envelope.subject_version, now=clock.now())

    @handlers.on(QuotaSetV1)
    async def on_quota_set(data: QuotaSetV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await copies.save_quota(uow.session, envelope.org_id, data.quota_id, scope=data.scope, scope_id=data.scope_id,
                                period=data.period, period_start=data.period_start, period_end=data.period_end,
                                amount=data.amount, currency=data.currency.upper(), version=data.version)
        if data.scope == "rep":
            await recalculation.queue_for_participant(uow, envelope.org_id, data.scope_id, data.period_start,
                                                      data.period_end, "quota_changed", clock.now())

    @handlers.on(QuotaRemovedV1)
    async def on_quota_removed(data: QuotaRemovedV1, envelope: Envelope, uow: UnitOfWork) -> None:
        removed = await copies.remove_quota(uow.session, envelope.org_id, data.quota_id)
        if removed is not None and removed.scope == "rep":
            await recalculation.queue_for_participant(uow, envelope.org_id, removed.scope_id, removed.period_start,
                                                      removed.period_end, "quota_changed", clock.now())

    @handlers.on(ReportingCurrencySetV1)
    async def on_reporting_currency(data: ReportingCurrencySetV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await copies.save_reporting_currency(uow.session, envelope.org_id, data.currency.upper())
        await recalculation.queue_open_statements(uow, envelope.org_id, None, "rate_changed", clock.now())

    @handlers.on(ExchangeRateSetV1)
    async def on_exchange_rate(data: ExchangeRateSetV1, envelope: Envelope, uow: UnitOfWork) -> None:
        await copies.save_exchange_rate(uow.session, envelope.org_id, data.base_currency.upper(),
                                        data.quote_currency.upper(), data.valid_from, data.rate)
        await recalculation.queue_open_statements(uow, envelope.org_id, data.valid_from, "rate_changed", clock.now())

    return handlers
