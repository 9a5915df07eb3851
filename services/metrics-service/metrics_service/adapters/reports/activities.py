"""Activity totals per rep (or team): from the daily counters, or from the activities of one pipeline's leads."""
from __future__ import annotations

from typing import NamedTuple

from ...domain.periods import DAY_S
from .sql import Filters, Number, Params, Query, Sql

DEFINITION = (
    "Activity totals per rep (group_by rep or team only) for the UTC days from `from`'s day up to, not "
    "including, `to`'s day: calls, talk_minutes (sum of call durations / 60), emails_logged (ActivityLogged "
    "email a person logged), emails_sequence (automated: ActivityLogged email with source sequence, as "
    "lead-service records the sequence emails under the owner's rep_id; shown apart and never counted as "
    "the rep's own touches), meetings, demos, proposals, notes, records_entered (LeadCreated whose snapshot "
    "owner is the rep), records_updated (LeadUpdated with cause edit, by the snapshot owner). An activity "
    "id is counted once, for the rep who logged it. With `pipeline`: the activities on leads whose current "
    "pipeline is that one (records_entered and records_updated are then null: not known per pipeline).")

COLUMNS = ("calls", "talk_seconds", "emails_logged", "emails_sequence", "meetings", "demos", "proposals",
           "notes", "records_entered", "records_updated")
# a rep's own touches: automated sequence emails (logged with the owner as rep_id) are not the rep's work
OWN_TOUCHES = "(d.calls + d.emails_logged + d.meetings + d.demos + d.proposals)"
KINDS = {"calls": "a.kind = 'call'", "emails_logged": "a.kind = 'email' AND a.source <> 'sequence'",
         "emails_sequence": "a.kind = 'email' AND a.source = 'sequence'", "meetings": "a.kind = 'meeting'",
         "demos": "a.kind = 'demo'", "proposals": "a.kind = 'proposal'", "notes": "a.kind = 'note'"}


class ActivityTotals(NamedTuple):
    """A rep's (or team's) activities of each kind (KINDS), seconds of calls, and from the daily counters
    (COLUMNS) the records the rep entered and updated (not known per pipeline: None)."""

    g: str
    calls: Number | None
    talk_seconds: Number | None
    emails_logged: Number | None
    emails_sequence: Number | None
    meetings: Number | None
    demos: Number | None
    proposals: Number | None
    notes: Number | None
    records_entered: Number | None = None
    records_updated: Number | None = None


class Touches(NamedTuple):
    rep: str
    v: Number | None


def daily_totals(f: Filters) -> Query[ActivityTotals]:
    """Per rep (or team) g: the sums of the daily counters (COLUMNS) over the period's UTC days."""
    g = "COALESCE(r.team_id, '')" if f.group_by == "team" else "d.rep_id"
    sums = ", ".join(f"SUM(d.{c}) AS {c}" for c in COLUMNS)
    where = f.day_where()
    return Sql(f"SELECT {g} AS g, {sums} FROM m_rep_daily d LEFT JOIN m_reps r ON r.org_id = d.org_id "
               f"AND r.rep_id = d.rep_id WHERE {where.text} GROUP BY 1 ORDER BY 1",
               where.params).read_as(ActivityTotals)


def pipeline_totals(f: Filters) -> Query[ActivityTotals]:
    """Activities on leads whose current pipeline is f.pipeline_id, per rep (or the rep's team) g and the same
    UTC days, counted from the activities themselves (the daily counters do not know the lead): KINDS and
    talk_seconds."""
    g = "COALESCE(r.team_id, '')" if f.group_by == "team" else "a.rep_id"
    params: Params = {"org": f.org_id, "pipeline": f.pipeline_id}
    where = ["a.org_id = :org", "l.pipeline_id = :pipeline", "a.rep_id IS NOT NULL"]
    if f.from_ts is not None:
        where.append("a.occurred_ts >= :from_day_ts")
        params["from_day_ts"] = (f.from_ts // DAY_S) * DAY_S
    if f.to_ts is not None:
        where.append("a.occurred_ts < :to_day_ts")
        params["to_day_ts"] = (f.to_ts // DAY_S) * DAY_S
    if f.rep_id is not None:
        where.append("a.rep_id = :me")
        params["me"] = f.rep_id
    counts = ", ".join(f"SUM(CASE WHEN {c} THEN 1 ELSE 0 END) AS {name}" for name, c in KINDS.items())
    return Sql(f"""
SELECT {g} AS g, {counts},
       SUM(CASE WHEN a.kind = 'call' THEN COALESCE(a.duration_seconds, 0) ELSE 0 END) AS talk_seconds
FROM m_activities a JOIN m_leads l ON l.org_id = a.org_id AND l.lead_id = a.lead_id
LEFT JOIN m_reps r ON r.org_id = a.org_id AND r.rep_id = a.rep_id
WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1""", params).read_as(ActivityTotals)


def own_touches(org_id: str, first_day: int, end_day: int) -> Query[Touches]:
    """Per rep: the rep's own touches (OWN_TOUCHES) on the UTC days [first_day, end_day)."""
    return Sql(f"SELECT d.rep_id AS rep, SUM({OWN_TOUCHES}) AS v FROM m_rep_daily d WHERE d.org_id = :org "
               "AND d.day >= :d0 AND d.day < :d1 GROUP BY 1",
               {"org": org_id, "d0": first_day, "d1": end_day}).read_as(Touches)
