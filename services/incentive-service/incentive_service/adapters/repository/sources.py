"""Queries: what statements are computed from (plans, payees, rates, quotas, wins and their reversals), and the
statements themselves. Returns domain objects or plain rows; no business rules here."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ...domain.commissions import Adjustment, Line, Quota, Reversal, Win
from ...domain.money import ExchangeRates, Rate
from ...domain.plans import PlanVersion, parse_plan
from ..orm import (
    adjustments,
    deal_outcomes,
    deals,
    exchange_rates,
    org_currency,
    payees,
    plans,
    quotas,
    statement_lines,
    statements,
)


@dataclass(frozen=True)
class Payee:
    participant_id: str
    team_ids: tuple[str, ...] = ()
    role: str | None = None
    currency: str | None = None


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


async def load_plans(session: AsyncSession, org_id: str) -> list[PlanVersion]:
    rows = (await session.execute(sa.select(plans).where(plans.c.org_id == org_id, plans.c.retired.is_(False))
                                  .order_by(plans.c.plan_id, plans.c.version))).all()
    # The document keeps what the manager sent; the row's dates say how long this version was in force.
    return [PlanVersion(r.plan_id, r.version, replace(parse_plan(r.document), effective_from=r.effective_from,
                                                      effective_to=r.effective_to)) for r in rows]


async def load_payees(session: AsyncSession, org_id: str) -> dict[str, Payee]:
    rows = (await session.execute(sa.select(payees).where(payees.c.org_id == org_id))).all()
    return {r.participant_id: Payee(r.participant_id, tuple(r.team_ids or ()), r.role, r.currency) for r in rows}


async def load_rates(session: AsyncSession, org_id: str) -> ExchangeRates:
    rows = (await session.execute(sa.select(exchange_rates).where(exchange_rates.c.org_id == org_id))).all()
    reporting = (await session.execute(sa.select(org_currency.c.reporting_currency)
                                       .where(org_currency.c.org_id == org_id))).scalar()
    return ExchangeRates([Rate(r.base_currency, r.quote_currency, r.valid_from, Decimal(r.rate)) for r in rows],
                         reporting)


# Queries about many participants at once name them in chunks (a bound parameter each).
CHUNK = 5000


def chunks(ids: Sequence[str]) -> list[list[str]]:
    ordered = sorted(set(ids))
    return [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]


async def load_quota(session: AsyncSession, org_id: str, participant_id: str, start: date, end: date) -> Quota | None:
    return (await load_quotas(session, org_id, [participant_id], start, end))[participant_id]


async def load_quotas(session: AsyncSession, org_id: str, participant_ids: Sequence[str], start: date,
                      end: date) -> dict[str, Quota | None]:
    """Each rep's quota for exactly the period, else the sum of their quotas inside it (months of a quarter)."""
    by_rep: dict[str, list[Any]] = {p: [] for p in participant_ids}
    for chunk in chunks(participant_ids):
        for r in (await session.execute(sa.select(quotas).where(
                quotas.c.org_id == org_id, quotas.c.scope == "rep", quotas.c.scope_id.in_(chunk),
                quotas.c.removed.is_(False), quotas.c.period_start >= start, quotas.c.period_end <= end)
                .order_by(quotas.c.scope_id, quotas.c.quota_id))).all():
            by_rep[r.scope_id].append(r)
    return {p: _quota_of(rows, start, end) for p, rows in by_rep.items()}


def _quota_of(rows: list[Any], start: date, end: date) -> Quota | None:
    exact = [r for r in rows if r.period_start == start and r.period_end == end]
    chosen = exact[:1] or rows
    currencies = {r.currency for r in chosen}
    if not chosen or len(currencies) != 1:
        return None
    return Quota(sum((Decimal(r.amount) for r in chosen), Decimal(0)), currencies.pop())


async def load_wins(session: AsyncSession, org_id: str, start: date, end: date,
                    closer_id: str | None) -> tuple[list[Win], dict[str, list[Reversal]], dict[str, list[datetime]]]:
    """Wins in [start, end) (of one closer, or all), with the later reversals of the deals that had any and those
    deals' later wins (the other deals need neither: nothing to claw back)."""
    won = sa.and_(deal_outcomes.c.org_id == org_id, deal_outcomes.c.kind == "won",
                  deal_outcomes.c.at >= day_start(start), deal_outcomes.c.at < day_start(end))
    if closer_id is not None:
        won = sa.and_(won, deal_outcomes.c.owner_id == closer_id)
    # Only the columns a win is made of, read as plain tuples: a whole org's quarter is 50,000 rows.
    rows = (await session.execute(
        sa.select(deal_outcomes.c.event_id, deal_outcomes.c.lead_id, deal_outcomes.c.at, deal_outcomes.c.value,
                  deal_outcomes.c.currency, deal_outcomes.c.owner_id, deal_outcomes.c.team_id, deals.c.product_line,
                  deals.c.company_key)
        .join(deals, sa.and_(deals.c.org_id == deal_outcomes.c.org_id, deals.c.lead_id == deal_outcomes.c.lead_id),
              isouter=True).where(won))).tuples().all()
    if not rows:
        return [], {}, {}
    first_win = await _first_wins(session, org_id, {row[8] for row in rows if row[8]})
    # What happened to these deals afterwards: reversals from the period's start, and wins again (of the whole
    # org, the period's own wins are `rows`; of one closer, another rep may have won the deal again in it).
    again_from = end if closer_id is None else start
    lead_ids = sa.select(deal_outcomes.c.lead_id).where(won)
    later = (await session.execute(sa.select(deal_outcomes.c.lead_id, deal_outcomes.c.kind, deal_outcomes.c.at)
                                   .where(deal_outcomes.c.org_id == org_id, deal_outcomes.c.lead_id.in_(lead_ids),
                                          sa.or_(sa.and_(deal_outcomes.c.kind != "won",
                                                         deal_outcomes.c.at >= day_start(start)),
                                                 sa.and_(deal_outcomes.c.kind == "won",
                                                         deal_outcomes.c.at >= day_start(again_from)))))).tuples().all()
    reversals: dict[str, list[Reversal]] = {}
    for lead_id, kind, at in later:
        if kind != "won":
            reversals.setdefault(lead_id, []).append(Reversal(lead_id, aware(at), kind))
    later_wins: dict[str, list[datetime]] = {}
    for lead_id, kind, at in later:
        if kind == "won" and lead_id in reversals:
            later_wins.setdefault(lead_id, []).append(aware(at))
    wins = []
    for event_id, lead_id, at, value, currency, owner_id, team_id, product_line, company_key in rows:
        if at.tzinfo is None:  # SQLite keeps no offset; every time stored is UTC
            at = at.replace(tzinfo=UTC)
        if lead_id in reversals:
            later_wins.setdefault(lead_id, []).append(at)
        if value is None or not currency:
            continue  # a win without a value credits nothing
        wins.append(Win(event_id, lead_id, at, value if isinstance(value, Decimal) else Decimal(value), currency,
                        owner_id, team_id, product_line, bool(company_key) and first_win.get(company_key) == at))
    return wins, reversals, later_wins


async def _first_wins(session: AsyncSession, org_id: str, keys: set[str]) -> dict[str, datetime]:
    """When each company (by key) was first won: a company's first win is a new logo."""
    if not keys:
        return {}
    if len(keys) <= 1000:
        # One closer's customers: their deals by index, each deal's first win by index (a join lets the
        # planner read every outcome of the org instead: ~6x slower on 50,000 wins).
        other = deal_outcomes.alias("other")
        first_of_deal = (sa.select(sa.func.min(other.c.at)).where(
            other.c.org_id == deals.c.org_id, other.c.lead_id == deals.c.lead_id, other.c.kind == "won")
            .scalar_subquery())
        per_deal = (sa.select(deals.c.company_key, first_of_deal.label("first_won"))
                    .where(deals.c.org_id == org_id, deals.c.company_key.in_(sorted(keys))).subquery())
        firsts = sa.select(per_deal.c.company_key, sa.func.min(per_deal.c.first_won)).group_by(
            per_deal.c.company_key)
    else:  # a whole org's: one pass over its wins
        firsts = (sa.select(deals.c.company_key, sa.func.min(deal_outcomes.c.at))
                  .join(deal_outcomes, sa.and_(deals.c.org_id == deal_outcomes.c.org_id,
                                               deals.c.lead_id == deal_outcomes.c.lead_id))
                  .where(deals.c.org_id == org_id, deal_outcomes.c.kind == "won",
                         deals.c.company_key.is_not(None))
                  .group_by(deals.c.company_key))
    return {key: aware(at) for key, at in (await session.execute(firsts)).tuples().all() if at is not None}


async def lead_outcomes(session: AsyncSession, org_id: str, lead_id: str) -> list[Any]:
    return list((await session.execute(sa.select(deal_outcomes).where(deal_outcomes.c.org_id == org_id,
                                                                      deal_outcomes.c.lead_id == lead_id)
                                       .order_by(deal_outcomes.c.at))).all())


async def insert_refund(session: AsyncSession, org_id: str, refund_id: str, lead_id: str, at: datetime,
                        recorded_by: str, note: str | None) -> None:
    """A won deal refunded, as entered over the API (an outcome like a loss: a clawback within the plan's days)."""
    await session.execute(sa.insert(deal_outcomes).values(
        org_id=org_id, event_id=refund_id, lead_id=lead_id, kind="refunded", at=at, recorded_by=recorded_by,
        note=note))


async def load_adjustments(session: AsyncSession, org_id: str, participant_id: str, start: date) -> list[Adjustment]:
    return (await load_adjustments_of(session, org_id, [participant_id], start))[participant_id]


async def load_adjustments_of(session: AsyncSession, org_id: str, participant_ids: Sequence[str],
                              start: date) -> dict[str, list[Adjustment]]:
    """Each participant's adjustments of the period starting `start`, oldest first."""
    found: dict[str, list[Adjustment]] = {p: [] for p in participant_ids}
    for chunk in chunks(participant_ids):
        for r in (await session.execute(sa.select(adjustments).where(
                adjustments.c.org_id == org_id, adjustments.c.participant_id.in_(chunk),
                adjustments.c.period_start == start).order_by(
                adjustments.c.participant_id, adjustments.c.created_at, adjustments.c.adjustment_id))).all():
            found[r.participant_id].append(Adjustment(r.adjustment_id, Decimal(r.amount), r.reason, r.author))
    return found


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------ statements
@dataclass(frozen=True)
class StatementRow:
    """One version of a participant's statement of a period (the `statements` table)."""

    org_id: str
    statement_id: str
    participant_id: str
    period_start: date
    period_end: date
    version: int
    status: str
    plan_currency: str
    total: Decimal
    payout_currency: str
    payout: Decimal
    summary: dict[str, Any]
    fingerprint: str
    reason: str
    revision: int
    computed_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    approved_by: str | None
    approved_at: datetime | None
    locked_by: str | None
    locked_at: datetime | None
    paid_by: str | None
    paid_at: datetime | None
    payment_reference: str | None


_STATEMENT_FIELDS = tuple(f.name for f in fields(StatementRow))


def statement_row(row: Any) -> StatementRow:
    return StatementRow(*(getattr(row, name) for name in _STATEMENT_FIELDS))


async def latest_statement(session: AsyncSession, org_id: str, participant_id: str, start: date,
                           for_update: bool = False) -> StatementRow | None:
    query = (sa.select(statements).where(statements.c.org_id == org_id, statements.c.participant_id == participant_id,
                                         statements.c.period_start == start)
             .order_by(statements.c.version.desc()).limit(1))
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return None if row is None else statement_row(row)


async def latest_statements(session: AsyncSession, org_id: str, participant_ids: Sequence[str], start: date,
                            for_update: bool = False) -> dict[str, StatementRow]:
    """The newest version of each participant's statement of the period starting `start` (absent: none yet).
    `for_update` locks every version of them, in one order everywhere (participant, version)."""
    latest: dict[str, StatementRow] = {}
    for chunk in chunks(participant_ids):
        query = (sa.select(statements).where(statements.c.org_id == org_id,
                                             statements.c.participant_id.in_(chunk),
                                             statements.c.period_start == start)
                 .order_by(statements.c.participant_id, statements.c.version))
        if for_update:
            query = query.with_for_update()
        for row in (await session.execute(query)).all():
            latest[row.participant_id] = statement_row(row)
    return latest


async def participant_statements(session: AsyncSession, org_id: str, participant_id: str) -> list[StatementRow]:
    """The latest version of each of a participant's statements, oldest period first."""
    return (await statement_histories(session, org_id, [participant_id]))[participant_id]


async def statement_histories(session: AsyncSession, org_id: str, participant_ids: Sequence[str],
                              before: date | None = None) -> dict[str, list[StatementRow]]:
    """Each participant's statements (of the periods starting before `before`, if given): the latest version of
    each, oldest period first."""
    latest: dict[str, dict[date, StatementRow]] = {p: {} for p in participant_ids}
    for chunk in chunks(participant_ids):
        query = sa.select(statements).where(statements.c.org_id == org_id, statements.c.participant_id.in_(chunk))
        if before is not None:
            query = query.where(statements.c.period_start < before)
        for row in (await session.execute(query.order_by(statements.c.participant_id, statements.c.period_start,
                                                          statements.c.version))).all():
            latest[row.participant_id][row.period_start] = statement_row(row)
    return {p: list(periods.values()) for p, periods in latest.items()}


async def statement_lines_of(session: AsyncSession, org_id: str, statement_id: str) -> list[Any]:
    return list((await session.execute(sa.select(statement_lines).where(
        statement_lines.c.org_id == org_id, statement_lines.c.statement_id == statement_id)
        .order_by(statement_lines.c.seq))).all())


def line_of(row: Any) -> Line:
    return Line(row.kind, row.key, Decimal(row.amount), row.description, tuple(row.steps or ()), row.lead_id,
                row.plan_id, row.plan_version, row.rule, row.reason, row.author)
