"""Quota attainment: the quotas of a period (read as repository.Quota; the wins they are compared with are
revenue.py's)."""
from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from ...domain.periods import Period
from ..orm import quotas

ATTAINMENT = (
    "Quota attainment for the quotas whose period contains `date` (with `period`: only quotas of that "
    "kind; without it every quota's own month, quarter or year): actual = value won in the quota's period "
    "by the rep or team credited with the win (the owner at the win, and that owner's team then), in the "
    "quota's own currency, each win converted at the rate of its day (actual_unconverted: wins with no "
    "rate, not counted); attainment_pct = actual / quota × 100; elapsed_pct = share of the period elapsed "
    "now × 100; pace_pct = attainment_pct / elapsed share (100 = exactly on pace); projected = actual / "
    "elapsed share. QuotaReached uses the same figures.")


def starting(org_id: str, starts: dict[Period, date], rep_id: str | None = None) -> sa.Select[tuple[object, ...]]:
    """The quotas of the org whose period kind and start are one of `starts` (period → its first day); a rep:
    their own."""
    query = sa.select(quotas).where(quotas.c.org_id == org_id, sa.or_(*[
        sa.and_(quotas.c.period == p, quotas.c.period_start == start) for p, start in starts.items()]))
    if rep_id is not None:
        query = query.where(quotas.c.scope == "rep", quotas.c.scope_id == rep_id)
    return query

