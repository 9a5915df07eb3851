"""Outcomes of closed and created leads: win rate, deal size, the seed's conversion rates and hand-overs."""
from __future__ import annotations

from typing import NamedTuple

from .sql import WON_CURRENCY, WON_VALUE, Filters, Number, Query, Sql, stats_sql

WIN_RATE = (
    "Win rate = won / (won + lost) × 100 among leads whose final outcome (the latest of won, lost, "
    "disqualified, reopened; a reopened lead is open) is won or lost with its closing time in [from, to), "
    "credited to the owner at the close. Disqualified leads are not counted.")
DEAL_SIZE = (
    "Deal size: for leads won with the win in [from, to) (credited to the owner at the win), per currency: "
    "count, total, mean and median of "
    "the won value (LeadWon.value, else the lead's value; wins without any value are left out).")
CONVERSION = (
    "Conversion rates of the seed, for leads created in [from, to) (credited to the owner at creation): "
    "qualification_rate = leads that left "
    "their first stage (entered a higher position than their first stage, or were won) / leads created; "
    "proposal_rate = leads that reached the ask stage (entered an ask stage, or a position >= the "
    "pipeline's first ask stage) / leads created; close_rate = leads won (final outcome) / leads created. "
    "All × 100.")
HANDOVERS = (
    "Hand-overs (account management's view): leads won with the win in [from, to) whose current owner is not "
    "the rep credited with the win (the owner at the win), i.e. customers handed over, per current owner "
    "(group_by team: the current team) and currency: customers, closers (distinct reps who won them) and "
    "won_value (LeadWon.value, else the lead's value). The wins stay credited to the closer in every other "
    "report. A rep sees the customers they own now.")


class WinLoss(NamedTuple):
    g: str
    won: Number
    lost: Number


class DealSize(NamedTuple):
    """The won values of a group in one currency ('' for none): count, total, mean and median."""

    g: str
    currency: str
    n: int
    total: Number
    mean: Number
    median: Number | None


class Conversion(NamedTuple):
    g: str
    created: int
    qualified: Number
    proposals: Number
    won: Number


class Handovers(NamedTuple):
    g: str
    currency: str
    customers: int
    closers: int
    won_value: Number | None


def win_rate(f: Filters) -> Query[WinLoss]:
    """Per group (g): won and lost, by the owner at the close."""
    f = f.credited("credit")
    where = f.lead_where("closed_ts")
    return Sql(f"""
SELECT {f.group_sql()} AS g, SUM(CASE WHEN l.outcome = 'won' THEN 1 ELSE 0 END) AS won,
       SUM(CASE WHEN l.outcome = 'lost' THEN 1 ELSE 0 END) AS lost
FROM m_leads l WHERE {where.text} AND l.outcome IN ('won', 'lost') GROUP BY 1 ORDER BY 1""",
               where.params).read_as(WinLoss)


def deal_size(f: Filters) -> Query[DealSize]:
    """Per group and currency (g, currency): n, total, mean and median of the won values, by the owner at the
    win; in exact decimals (the window form) on every dialect."""
    f = f.credited("credit")
    where = f.lead_where("closed_ts")
    return Sql(stats_sql(
        f"SELECT {f.group_sql()} AS g, {WON_CURRENCY} AS currency, {WON_VALUE} AS x FROM m_leads l "
        f"WHERE {where.text} AND l.outcome = 'won'", ["g", "currency"]) + " ORDER BY 1, 2",
        where.params).read_as(DealSize)


def conversion(f: Filters) -> Query[Conversion]:
    """Per group (g) of the leads created in the period: created, qualified, proposals, won."""
    f = f.credited("first")
    where = f.lead_where("created_ts")
    return Sql(f"""
SELECT {f.group_sql()} AS g, COUNT(*) AS created,
  SUM(CASE WHEN l.max_position > l.first_position OR l.outcome = 'won' THEN 1 ELSE 0 END) AS qualified,
  SUM(CASE WHEN l.ask_entered_ts IS NOT NULL OR l.max_position >= a.ask_position THEN 1 ELSE 0 END) AS proposals,
  SUM(CASE WHEN l.outcome = 'won' THEN 1 ELSE 0 END) AS won
FROM m_leads l LEFT JOIN (SELECT pipeline_id, MIN(position) AS ask_position FROM m_stages
                          WHERE org_id = :org AND is_ask GROUP BY pipeline_id) a ON a.pipeline_id = l.pipeline_id
WHERE {where.text} GROUP BY 1 ORDER BY 1""", where.params).read_as(Conversion)


def handovers(f: Filters) -> Query[Handovers]:
    """Per current owner (or team) and currency (g, currency): customers, closers and won_value of the won
    leads now owned by someone other than the rep credited with the win."""
    g = "COALESCE(l.team_id, '')" if f.group_by == "team" else "COALESCE(l.owner_id, '')"
    where = f.credited("current").lead_where("closed_ts")
    # `outcome = 'won'` and the owner comparison are ix_m_leads_handed_over's condition, word for word: the
    # planner then reads the period's hand-overs alone (a third of the wins), not every close of the period
    return Sql(f"""
SELECT {g} AS g, {WON_CURRENCY} AS currency, COUNT(*) AS customers, COUNT(DISTINCT l.credit_owner_id) AS closers,
       SUM({WON_VALUE}) AS won_value
FROM m_leads l WHERE {where.text} AND l.outcome = 'won' AND l.owner_id IS NOT NULL
  AND l.owner_id <> COALESCE(l.credit_owner_id, '') GROUP BY 1, 2 ORDER BY 1, 2""", where.params).read_as(Handovers)
