"""The leaderboard: reps ranked by revenue, deals won, their own touches (activities.own_touches) or quota
attainment (the wins: revenue.py)."""
from __future__ import annotations

from datetime import date
from typing import NamedTuple

from .sql import Number, Query, Sql

DEFINITION = (
    "Leaderboard for the calendar month, quarter or year containing `date`: reps ranked (ties share a "
    "rank) by revenue (value won in the period, credited to the owner at the win, in the reporting "
    "currency, each win at its day's rate; a win without a value counts 0; revenue_unconverted names "
    "what had no rate), deals_won, activities (the rep's own calls + emails the rep logged + meetings + "
    "demos + proposals on UTC days in the period; automated sequence emails and notes are not counted) or "
    "quota_attainment (won value in the quota's currency / the rep's quota for that period × 100). A rep "
    "sees their own row.")


class RepQuota(NamedTuple):
    scope_id: str
    amount: Number
    currency: str


def rep_quotas(org_id: str, period: str, start: date) -> Query[RepQuota]:
    """The reps' quotas (scope_id, amount, currency) above zero for the period starting on `start`."""
    return Sql("SELECT q.scope_id, q.amount, q.currency FROM quotas q WHERE q.org_id = :org "
               "AND q.scope = 'rep' AND q.period = :period AND q.period_start = :pstart "
               "AND q.amount > 0", {"org": org_id, "period": period, "pstart": start}).read_as(RepQuota)
