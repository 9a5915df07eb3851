"""The forecast of a period (won so far, the open pipeline, weighted by stage and by history) and the accuracy
of frozen forecasts."""
from __future__ import annotations

from typing import NamedTuple

from ...domain.periods import month_number
from .sql import Filters, Number, Query, Sql, bound

DEFINITION = (
    "Forecast for the calendar month, quarter or year containing `date`, in the reporting currency "
    "(`currency`): won_so_far = won value of leads won in the period, each converted at the rate of its "
    "win's day (credited to the owner at the win); open_pipeline = value of open leads (current owner) in "
    "a pipeline whose expected close date is in the period, converted at the rates in force on the day the "
    "forecast is computed (a snapshot: the day it is frozen); weighted_by_stage = won_so_far + Σ value × "
    "current stage win probability over that open pipeline; weighted_by_history = won_so_far + "
    "open_pipeline × the group's historical win rate (won / (won + lost) among its leads closed before the "
    "period start, credited to the owner at the close; 0 without history, and historical_win_rate_pct is "
    "then 0); best_case = won_so_far + open_pipeline. won_by_currency / open_by_currency: the original "
    "amounts; unconverted: amounts with no rate (not in any figure).")
ACCURACY = (
    "Forecast accuracy per closed period (period end <= now), from the snapshot frozen while the period "
    "ran (a period that has ended cannot be frozen): actual = value won in the period by the scope (org, "
    "team or rep credited with the win: the owner at the win), in the snapshot's currency, each win at "
    "its day's rate; accuracy_pct = (1 − |forecast − actual| / actual) × 100 (null when actual is 0); bias "
    "= forecast − actual (positive = over-forecast); bias_pct = bias / actual × 100. forecast = the "
    "snapshot's weighted_by_stage; the history-weighted figures are given alongside.")


class History(NamedTuple):
    """A group's leads won and lost before the period."""

    g: str
    hist_won: Number | None
    hist_lost: Number | None


class OpenPipeline(NamedTuple):
    """A group's open pipeline in one currency, and that weighted by the current stages' win probabilities."""

    g: str
    currency: str | None
    open_pipeline: Number
    weighted_open: Number


def history(f: Filters, start_ts: float, end_ts: float, *, by_month: bool) -> Query[History]:
    """Per group (g): hist_won and hist_lost, the leads closed before the period [start_ts, end_ts) starts (by
    the owner at the close); `by_month`: summed from m_closed_months (rollup_serves)."""
    f = f.credited("credit")
    period = {"ps": start_ts, "pe": end_ts}
    if by_month:  # the history's counts are monthly sums
        where = f.rollup_where()
        return Sql(f"""
SELECT {f.rollup_group()} AS g, SUM(CASE WHEN m.outcome = 'won' THEN m.leads ELSE 0 END) AS hist_won,
  SUM(CASE WHEN m.outcome = 'lost' THEN m.leads ELSE 0 END) AS hist_lost
FROM m_closed_months m WHERE {where.text} AND m.outcome IN ('won', 'lost') AND m.month < :first_month
GROUP BY 1""", bound(where, **period, first_month=month_number(start_ts))).read_as(History)
    where = f.lead_where(None)
    return Sql(f"""
SELECT {f.group_sql()} AS g, SUM(CASE WHEN l.outcome = 'won' THEN 1 ELSE 0 END) AS hist_won,
  SUM(CASE WHEN l.outcome = 'lost' THEN 1 ELSE 0 END) AS hist_lost
FROM m_leads l WHERE {where.text} AND l.outcome IN ('won', 'lost') AND l.closed_ts < :ps GROUP BY 1""",
               bound(where, **period)).read_as(History)


def open_pipeline(f: Filters, start_ts: float, end_ts: float) -> Query[OpenPipeline]:
    """Per group and currency (g, currency): open_pipeline and weighted_open (× the current stage's win
    probability) of the open leads in a pipeline expected to close in [start_ts, end_ts)."""
    f = f.credited("credit")
    where = f.lead_where(None)
    return Sql(f"""
SELECT {f.group_sql()} AS g, l.currency, SUM(COALESCE(l.value, 0)) AS open_pipeline,
  SUM(COALESCE(l.value, 0) * COALESCE(l.current_win_probability, 0)) AS weighted_open
FROM m_leads l WHERE {where.text} AND l.outcome = 'open' AND l.pipeline_entered_ts IS NOT NULL
  AND l.expected_close_ts >= :ps AND l.expected_close_ts < :pe GROUP BY 1, 2""",
               bound(where, ps=start_ts, pe=end_ts)).read_as(OpenPipeline)
