"""Outcomes of closed and created leads: win rate, deal size, the seed's conversion rates and hand-overs (the
SQL: adapters/reports/outcomes.py)."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from ...adapters import reports as queries
from ...adapters import rollups
from ...adapters.orm import m_won_months
from ...adapters.reports import Filters, fetch
from ...adapters.reports.outcomes import DealSize
from ...adapters.reports.sql import duration_months
from ...domain import formulas
from .common import Row, dialect_of, group_name, name_groups


async def win_rate(session: AsyncSession, f: Filters) -> list[Row]:
    rows = [{"group": group_name(r.g), "won": int(r.won), "lost": int(r.lost),
             "win_rate_pct": formulas.win_rate(int(r.won), int(r.lost))}
            for r in await fetch(session, queries.outcomes.win_rate(f))]
    return await name_groups(session, f, rows)


async def deal_size(session: AsyncSession, f: Filters) -> list[Row]:
    months = duration_months(dialect_of(session), f)
    found: list[DealSize]
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_won_months
        per_group: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
        for owner, team, currency, _, won_values in await rollups.duration_rows(
                session, m_won_months, ["owner_id", "team_id", "currency", "deals", "won_values"], f.org_id, months,
                pipeline_id=f.pipeline_id, owner_id=f.rep_id):
            per_group[({None: "", "rep": owner, "team": team}[f.group_by], currency)] += won_values
        found = [DealSize(g, currency, len(values), sum(values, Decimal(0)), sum(values, Decimal(0)) / len(values),
                          formulas.median(values)) for (g, currency), values in sorted(per_group.items())]
    else:
        found = await fetch(session, queries.outcomes.deal_size(f))
    rows = [{"group": group_name(r.g), "currency": r.currency or None, "deals": int(r.n),
             "total": formulas.money(r.total), "mean": formulas.money(r.mean),
             "median": formulas.money(r.median)} for r in found]
    return await name_groups(session, f, rows)


async def conversion(session: AsyncSession, f: Filters) -> list[Row]:
    rows = [{"group": group_name(r.g), "created": int(r.created), "qualified": int(r.qualified),
             "proposals": int(r.proposals), "won": int(r.won),
             "qualification_rate_pct": formulas.pct(r.qualified, r.created),
             "proposal_rate_pct": formulas.pct(r.proposals, r.created),
             "close_rate_pct": formulas.pct(r.won, r.created)}
            for r in await fetch(session, queries.outcomes.conversion(f))]
    return await name_groups(session, f, rows)


async def handovers(session: AsyncSession, f: Filters) -> list[Row]:
    """Won leads now owned by someone other than the rep credited with the win, per current owner (or team)."""
    rows = [{"group": group_name(r.g), "currency": r.currency or None, "customers": int(r.customers),
             "closers": int(r.closers), "won_value": formulas.money(r.won_value)}
            for r in await fetch(session, queries.outcomes.handovers(f))]
    return await name_groups(session, f, rows, default="rep")
