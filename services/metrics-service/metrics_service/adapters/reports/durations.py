"""How long things take: the sales cycle, ask-to-decision and the first response to a new lead."""
from __future__ import annotations

from typing import NamedTuple

from .sql import Dialect, Filters, Number, Query, Sql, stats_sql

SALES_CYCLE = (
    "Sales-cycle length: for leads won in [from, to) (credited to the owner at the win), mean and median "
    "days from lead creation to the win. "
    "Ask-to-decision: for leads won or lost in [from, to) that entered an ask stage, mean and median days "
    "from their first ask-stage entry to the win or loss.")
RESPONSE_TIME = (
    "Lead response time: for leads created in [from, to) that had an owner at creation, hours from "
    "creation to the first human touch by that owner: a call, an email or a meeting the rep logged "
    "(ActivityLogged with that rep_id and a source other than sequence: automated sequence emails are never "
    "a response, whoever they are logged for). Credited to the owner at creation. responded = leads with "
    "such a touch; median_hours and p90_hours over them; not_responded = the others. Grouped by rep unless "
    "group_by says otherwise.")


class Durations(NamedTuple):
    """A group's durations (seconds): how many, their mean and median."""

    g: str
    n: int
    mean: Number | None
    median: Number | None


class DecidedDurations(NamedTuple):
    """A group's sales cycles (c_) and ask-to-decision durations (a_) from one pass: how many, mean, median."""

    g: str
    c_n: int
    c_mean: Number | None
    c_median: Number | None
    a_n: int
    a_mean: Number | None
    a_median: Number | None


class ResponseTimes(NamedTuple):
    """A group's first-response times (seconds): how many, median and p90 (nearest rank)."""

    g: str
    n: int
    median: Number | None
    p90: Number | None


class RespondingLeads(NamedTuple):
    g: str
    leads: int


def sales_cycles(f: Filters, dialect: Dialect) -> Query[Durations]:
    """Per group (g): n, mean, median, … of the days from creation to the win of the period's wins."""
    f = f.credited("credit")
    where = f.lead_where("closed_ts")
    return Sql(stats_sql(f"SELECT {f.group_sql()} AS g, l.closed_ts - l.created_ts AS x FROM m_leads l "
                         f"WHERE {where.text} AND l.outcome = 'won' AND l.created_ts IS NOT NULL", ["g"], dialect),
               where.params).read_as(Durations)


def ask_to_decision(f: Filters, dialect: Dialect) -> Query[Durations]:
    """Per group (g): n, mean, median, … of the days from the first ask-stage entry to the win or loss."""
    f = f.credited("credit")
    where = f.lead_where("closed_ts")
    return Sql(stats_sql(f"SELECT {f.group_sql()} AS g, l.closed_ts - l.ask_entered_ts AS x FROM m_leads l "
                         f"WHERE {where.text} AND l.outcome IN ('won', 'lost') AND l.ask_entered_ts IS NOT NULL",
                         ["g"], dialect), where.params).read_as(Durations)


def sales_cycle_one_pass(f: Filters) -> Query[DecidedDurations]:
    """PostgreSQL: both statistics of the sales cycle (per group: c_n, c_mean, c_median and a_n, a_mean,
    a_median) from one scan of the period's decided leads: each aggregate skips the nulls of the leads it
    does not count (a cycle only for wins with a creation time, ask-to-decision only with an ask entry), so
    each sees exactly the values of its own query. Two queries read the ~110,000 index entries of a quarter's
    closes at 1M leads twice."""
    f = f.credited("credit")
    where = f.lead_where("closed_ts")
    return Sql(f"""
SELECT g COLLATE "C" AS g, COUNT(c) AS c_n, AVG(c) AS c_mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY c) AS c_median,
       COUNT(a) AS a_n, AVG(a) AS a_mean, percentile_cont(0.5) WITHIN GROUP (ORDER BY a) AS a_median
FROM (SELECT {f.group_sql()} AS g,
             CASE WHEN l.outcome = 'won' AND l.created_ts IS NOT NULL THEN l.closed_ts - l.created_ts END AS c,
             CASE WHEN l.ask_entered_ts IS NOT NULL THEN l.closed_ts - l.ask_entered_ts END AS a
      FROM m_leads l WHERE {where.text} AND l.outcome IN ('won', 'lost')) v
GROUP BY 1 HAVING COUNT(c) + COUNT(a) > 0""", where.params).read_as(DecidedDurations)


def _responding(f: Filters) -> tuple[str, Sql]:
    f = f.credited("first")
    where = f.lead_where("created_ts")
    return f.group_sql("rep"), Sql(where.text + " AND l.first_owner_id IS NOT NULL", where.params)


def response_times(f: Filters, dialect: Dialect) -> Query[ResponseTimes]:
    """Per group (g, by rep unless grouped otherwise): n, median, p90, … of the hours from creation to the
    first touch by the owner at creation, of the period's leads that had an owner then."""
    g, where = _responding(f)
    return Sql(stats_sql(f"SELECT {g} AS g, l.first_owner_activity_ts - l.created_ts AS x FROM m_leads l "
                         f"WHERE {where.text}", ["g"], dialect), where.params).read_as(ResponseTimes)


def responding_leads(f: Filters) -> Query[RespondingLeads]:
    """Per group (g): the leads created in the period that had an owner then."""
    g, where = _responding(f)
    return Sql(f"SELECT {g} AS g, COUNT(*) AS leads FROM m_leads l WHERE {where.text} GROUP BY 1 ORDER BY 1",
               where.params).read_as(RespondingLeads)
