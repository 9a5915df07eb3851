"""The reports, computed in SQL over the read models (never by looping over raw events).

Every query is scoped to the caller's org; a rep sees only leads they own (and their own activity rows).
SQL here is portable between PostgreSQL and SQLite: times are epoch seconds, medians and percentiles are
computed with window functions (median = mean of the two middle values, p75/p90 = nearest rank).
The definitions below are the API documentation of each endpoint, word for word what the SQL does.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ..adapters.orm import m_cohort_months, m_created_months, m_stay_months, m_won_months
from ..domain import exchange, formulas
from ..domain.exchange import Converted
from ..domain.periods import (
    DAY_S,
    Period,
    days,
    elapsed_share,
    from_ts,
    hours,
    month_number,
    period_bounds,
    quarters_overlapping,
    to_ts,
)
from . import currencies, rollups

# Who a lead's figures are credited to (the `basis` of a report): "credit" = the owner, team and territory at the
# close for closed leads (the current ones while open), "first" = at creation, "current" = now.
BASES = {"current": ("l.owner_id", "l.team_id", "l.territory_id"),
         "credit": ("l.credit_owner_id", "l.credit_team_id", "COALESCE(l.credit_territory_id, l.routed_territory_id)"),
         "first": ("l.first_owner_id", "l.first_team_id", "COALESCE(l.first_territory_id, l.routed_territory_id)")}


def groups(basis: str = "current") -> dict[str, str]:
    owner, team, territory = BASES[basis]
    return {"rep": owner, "team": team, "product_line": "l.product_line", "territory": territory,
            "source": "l.source"}


GROUPS = groups()
GroupBy = str | None
MONEY_OUT = ("revenue", "total", "mean", "median", "won_so_far", "weighted_by_stage", "weighted_by_history",
             "best_case", "open_pipeline")

COMMON = ("Filters: the org comes from the token; `from`/`to` bound the period [from, to) on the date named "
          "below; `pipeline` keeps leads whose current pipeline is that one; `group_by` is one of rep, team, "
          "product_line, territory, source. Credit: every figure goes to whoever owned the lead when the counted "
          "thing happened (from the lead's assignment history): a win, a loss and the revenue to the owner at "
          "the close, with the team and territory of that moment (a hand-over the win triggers does not count); "
          "a stage exit to the owner at the exit; a lead's creation cohort (response, conversion, funnel reach, "
          "leads generated) to the owner at creation (the newest assignment at or before it, else the first); "
          "open leads to their current owner. rep and team mean those. A rep sees only the figures credited to "
          "them. Money: every money figure is in the `currency` beside it (deal-size and handovers per original "
          "currency; the others in the org's reporting currency, GET /v1/reporting-currency, USD until an admin "
          "sets one, or a quota's own currency), converted with the org's dated rates (POST /v1/exchange-rates: "
          "the pair's rate in force on the amount's day, else the inverse pair's); amounts with no rate are "
          "listed as unconverted and never added. Medians are the mean of the two middle values; p75/p90 are "
          "nearest-rank (the value at rank ceil(p × n)).")

DEFINITIONS: dict[str, str] = {
    "funnel": (
        "Funnel. Cohort: leads whose first stage entry (pipeline entered) is in [from, to), credited to the "
        "owner at creation; the stays (median days, drop-off) to the owner at the stay's end. For each stage of "
        "the cohort's pipeline(s): reached = cohort leads whose highest stage position entered in that pipeline "
        "is >= the stage's position (entered it or a later one); conversion_pct = reached / reached of the "
        "previous stage × 100 (null for the first stage); conversion_from_first_pct = reached / reached of the "
        "first stage × 100; drop_off = cohort leads that were lost or disqualified while in that stage; "
        "median_days_in_stage = median of (next boundary − entry) over the cohort's completed stays in the "
        "stage (a stay ends at the lead's next stage entry, win, loss or disqualification)."),
    "win_rate": (
        "Win rate = won / (won + lost) × 100 among leads whose final outcome (the latest of won, lost, "
        "disqualified, reopened; a reopened lead is open) is won or lost with its closing time in [from, to), "
        "credited to the owner at the close. Disqualified leads are not counted."),
    "deal_size": (
        "Deal size: for leads won with the win in [from, to) (credited to the owner at the win), per currency: "
        "count, total, mean and median of "
        "the won value (LeadWon.value, else the lead's value; wins without any value are left out)."),
    "sales_cycle": (
        "Sales-cycle length: for leads won in [from, to) (credited to the owner at the win), mean and median "
        "days from lead creation to the win. "
        "Ask-to-decision: for leads won or lost in [from, to) that entered an ask stage, mean and median days "
        "from their first ask-stage entry to the win or loss."),
    "response_time": (
        "Lead response time: for leads created in [from, to) that had an owner at creation, hours from "
        "creation to the first human touch by that owner: a call, an email or a meeting the rep logged "
        "(ActivityLogged with that rep_id and a source other than sequence: automated sequence emails are never "
        "a response, whoever they are logged for). Credited to the owner at creation. responded = leads with "
        "such a touch; median_hours and p90_hours over them; not_responded = the others. Grouped by rep unless "
        "group_by says otherwise."),
    "conversion": (
        "Conversion rates of the seed, for leads created in [from, to) (credited to the owner at creation): "
        "qualification_rate = leads that left "
        "their first stage (entered a higher position than their first stage, or were won) / leads created; "
        "proposal_rate = leads that reached the ask stage (entered an ask stage, or a position >= the "
        "pipeline's first ask stage) / leads created; close_rate = leads won (final outcome) / leads created. "
        "All × 100."),
    "activities": (
        "Activity totals per rep (group_by rep or team only) for the UTC days from `from`'s day up to, not "
        "including, `to`'s day: calls, talk_minutes (sum of call durations / 60), emails_logged (ActivityLogged "
        "email a person logged), emails_sequence (automated: ActivityLogged email with source sequence, as "
        "lead-service records the sequence emails under the owner's rep_id; shown apart and never counted as "
        "the rep's own touches), meetings, demos, proposals, notes, records_entered (LeadCreated whose snapshot "
        "owner is the rep), records_updated (LeadUpdated with cause edit, by the snapshot owner). An activity "
        "id is counted once, for the rep who logged it. With `pipeline`: the activities on leads whose current "
        "pipeline is that one (records_entered and records_updated are then null: not known per pipeline)."),
    "production": (
        "Production: leads_generated = leads created in [from, to) (credited to the owner at creation); "
        "deals_won and revenue = leads won (final outcome) with the win in [from, to) (credited to the owner at "
        "the win), revenue = sum of won values (LeadWon.value, else the lead's) in the org's reporting currency "
        + "(`currency`), each converted at the rate in force on the day of its win; revenue_by_currency = the "
        "original amounts per currency; revenue_unconverted = amounts with no rate that day (named, not in "
        "revenue). quarters: for each calendar quarter overlapping [from, to), the revenue won in the whole "
        "quarter (the same way) / quota_reps, the reps carrying a quota (month, quarter or year) for a period "
        "that overlaps the quarter (null when none)."),
    "forecast": (
        "Forecast for the calendar month, quarter or year containing `date`, in the reporting currency "
        "(`currency`): won_so_far = won value of leads won in the period, each converted at the rate of its "
        "win's day (credited to the owner at the win); open_pipeline = value of open leads (current owner) in "
        "a pipeline whose expected close date is in the period, converted at the rates in force on the day the "
        "forecast is computed (a snapshot: the day it is frozen); weighted_by_stage = won_so_far + Σ value × "
        "current stage win probability over that open pipeline; weighted_by_history = won_so_far + "
        "open_pipeline × the group's historical win rate (won / (won + lost) among its leads closed before the "
        "period start, credited to the owner at the close; 0 without history, and historical_win_rate_pct is "
        "then 0); best_case = won_so_far + open_pipeline. won_by_currency / open_by_currency: the original "
        "amounts; unconverted: amounts with no rate (not in any figure)."),
    "forecast_accuracy": (
        "Forecast accuracy per closed period (period end <= now), from the snapshot frozen while the period "
        "ran (a period that has ended cannot be frozen): actual = value won in the period by the scope (org, "
        "team or rep credited with the win: the owner at the win), in the snapshot's currency, each win at "
        "its day's rate; accuracy_pct = (1 − |forecast − actual| / actual) × 100 (null when actual is 0); bias "
        "= forecast − actual (positive = over-forecast); bias_pct = bias / actual × 100. forecast = the "
        "snapshot's weighted_by_stage; the history-weighted figures are given alongside."),
    "quota_attainment": (
        "Quota attainment for the quotas whose period contains `date` (with `period`: only quotas of that "
        "kind; without it every quota's own month, quarter or year): actual = value won in the quota's period "
        "by the rep or team credited with the win (the owner at the win, and that owner's team then), in the "
        "quota's own currency, each win converted at the rate of its day (actual_unconverted: wins with no "
        "rate, not counted); attainment_pct = actual / quota × 100; elapsed_pct = share of the period elapsed "
        "now × 100; pace_pct = attainment_pct / elapsed share (100 = exactly on pace); projected = actual / "
        "elapsed share. QuotaReached uses the same figures."),
    "adoption": (
        "Adoption. coverage (as of now; from/to do not apply): open leads (created, final outcome open; "
        "current owner) that are in a pipeline, have an owner and no overdue required task (open, required, "
        "flagged overdue or due before now) / all open leads × 100. compliance (the exit in [from, to)): stage "
        "exits (a stay that ended by another stage entry, a win, a loss or a disqualification) that were a "
        "win, by goal (the next entry's reason is goal_met), or whose visit had required tasks (created "
        "during that visit) that were all completed / all stage exits × 100, credited to the owner at the "
        "exit, per group (rep by default; leads nobody owned are the null group). `time_basis` says both."),
    "coaching": (
        "Coaching, per rep and stage, over stays that entered the stage in [from, to) and have ended, each "
        "credited to the owner (and that owner's team) at the stay's end: exits, converted = stays that ended "
        "by entering a higher position or by a win, conversion_pct = converted / exits × 100, "
        "median_days_in_stage; the same for the team alongside, and the differences. Stays nobody owned are "
        "no rep: they are counted per team and stage in `unassigned`. stalls_most: per rep, the stage where "
        "the rep's median time exceeds the team's by the largest ratio (rep median / team median), only "
        "where that ratio is above 1 (slower than the team); slower_than_team false and no stage otherwise. "
        "group_by does not apply (422)."),
    "stalled_deals": (
        "Stalled deals: open leads with an owner whose time in their current stage (now − entry) exceeds the "
        "75th percentile (nearest rank) of completed stays in that stage by leads of the same team; the "
        "baseline is the first with at least 5 completed stays: the team's stays entered in [from, to) "
        "(team_period), the team's stays entered in the 365 days before `to` (or now) (team_trailing_year), "
        "every team's stays of the stage in those days (org_trailing_year); with none the lead is not judged. "
        "Each row says its baseline and baseline_stays. Sorted by how far they exceed it; at most 500. Open "
        "leads nobody owns are listed apart in `unassigned` (oldest first, compared with no one). group_by "
        "does not apply (422)."),
    "handovers": (
        "Hand-overs (account management's view): leads won with the win in [from, to) whose current owner is not "
        "the rep credited with the win (the owner at the win), i.e. customers handed over, per current owner "
        "(group_by team: the current team) and currency: customers, closers (distinct reps who won them) and "
        "won_value (LeadWon.value, else the lead's value). The wins stay credited to the closer in every other "
        "report. A rep sees the customers they own now."),
    "leaderboard": (
        "Leaderboard for the calendar month, quarter or year containing `date`: reps ranked (ties share a "
        "rank) by revenue (value won in the period, credited to the owner at the win, in the reporting "
        "currency, each win at its day's rate; a win without a value counts 0; revenue_unconverted names "
        "what had no rate), deals_won, activities (the rep's own calls + emails the rep logged + meetings + "
        "demos + proposals on UTC days in the period; automated sequence emails and notes are not counted) or "
        "quota_attainment (won value in the quota's currency / the rep's quota for that period × 100). A rep "
        "sees their own row."),
}


@dataclass
class Filters:
    org_id: str
    from_ts: float | None = None
    to_ts: float | None = None
    pipeline_id: str | None = None
    group_by: GroupBy = None
    rep_id: str | None = None  # set when the caller is a rep: only their own leads
    now: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)
    basis: str = "current"  # whose leads: BASES

    def group_sql(self, default: GroupBy = None) -> str:
        key = self.group_by or default
        return f"COALESCE({groups(self.basis)[key]}, '')" if key else "''"

    def credited(self, basis: str) -> Filters:
        self.basis = basis
        return self

    def lead_where(self, period_col: str | None, alias: str = "l") -> str:
        self.params.update(org=self.org_id)
        parts = [f"{alias}.org_id = :org"]
        if period_col is not None:
            if self.from_ts is not None:
                parts.append(f"{alias}.{period_col} >= :from_ts")
                self.params["from_ts"] = self.from_ts
            if self.to_ts is not None:
                parts.append(f"{alias}.{period_col} < :to_ts")
                self.params["to_ts"] = self.to_ts
            parts.append(f"{alias}.{period_col} IS NOT NULL")
        if self.pipeline_id is not None:
            parts.append(f"{alias}.pipeline_id = :pipeline")
            self.params["pipeline"] = self.pipeline_id
        if self.rep_id is not None:
            parts.append(f"{BASES[self.basis][0].replace('l.', alias + '.')} = :me")
            self.params["me"] = self.rep_id
        return " AND ".join(parts)


STAY_GROUPS = {"rep": "t.owner_id", "team": "t.team_id"}  # copied on the timeline rows


def stays_from(f: Filters, period_col: str | None, *, default: GroupBy = None, own_only: bool = True,
               with_lead: bool = False) -> tuple[str, str]:
    """(group expression, FROM … WHERE …) over stays (stage rows) using the lead attributes copied on them;
    joins m_leads only for a group_by the timeline does not carry (or when `with_lead`)."""
    key = f.group_by or default
    join = with_lead or (key is not None and key not in STAY_GROUPS)
    group = "''" if key is None else f"COALESCE({STAY_GROUPS[key] if key in STAY_GROUPS else GROUPS[key]}, '')"
    parts = stay_conditions(f, period_col, own_only=own_only)
    source = "m_timeline t"
    if join:
        source += " JOIN m_leads l ON l.org_id = t.org_id AND l.lead_id = t.lead_id"
    return group, f"FROM {source} WHERE {' AND '.join(parts)}"


def stay_conditions(f: Filters, period_col: str | None, *, own_only: bool = True) -> list[str]:
    """The WHERE conditions on stays `t` of the caller's org, period, pipeline and (for a rep) own leads."""
    f.params.update(org=f.org_id)
    parts = ["t.org_id = :org", "t.kind = 'stage'"]
    if period_col is not None:
        parts.append(f"t.{period_col} IS NOT NULL")
        if f.from_ts is not None:
            parts.append(f"t.{period_col} >= :from_ts")
            f.params["from_ts"] = f.from_ts
        if f.to_ts is not None:
            parts.append(f"t.{period_col} < :to_ts")
            f.params["to_ts"] = f.to_ts
    if f.pipeline_id is not None:
        parts.append("t.lead_pipeline_id = :pipeline")
        f.params["pipeline"] = f.pipeline_id
    if f.rep_id is not None and own_only:
        parts.append("t.owner_id = :me")
        f.params["me"] = f.rep_id
    return parts


def per_stage(f: Filters, inner: str, aggregate: str, *, per_team: bool) -> str:
    """PostgreSQL: `aggregate` (a SELECT … FROM v …) over the ended stays `inner` selects (a SELECT … FROM
    m_timeline t WHERE …), run once per stage of m_stages, and with `per_team` once per team and stage (team =
    COALESCE(team_id, ''): the stays with no team join the '' group). Each run is one range of an index ordered
    by (team,) stage and period time (ix_m_timeline_team_stays / ix_m_timeline_cohort_stays), so nothing sorts
    the quarter's stays by group: only each group's own values are sorted, for its median or percentile.
    Columns out: team (with per_team), pipeline_id, stage_id, then the aggregate's."""
    stage = "t.pipeline_id = s.pipeline_id AND t.stage_id = s.stage_id"
    if not per_team:
        return f"""
SELECT s.pipeline_id, s.stage_id, q.* FROM m_stages s
CROSS JOIN LATERAL (WITH v AS ({inner} AND {stage}) {aggregate}) q WHERE s.org_id = :org"""
    # the teams present, found by skipping through the index (one descent per team, not a scan of the stays)
    return f"""
WITH RECURSIVE teams AS (
  (SELECT t.team_id FROM m_timeline t WHERE t.org_id = :org AND t.kind = 'stage' AND t.next_ts IS NOT NULL
     AND t.team_id > '' ORDER BY t.team_id LIMIT 1)
  UNION ALL
  SELECT (SELECT t.team_id FROM m_timeline t WHERE t.org_id = :org AND t.kind = 'stage' AND t.next_ts IS NOT NULL
            AND t.team_id > teams.team_id ORDER BY t.team_id LIMIT 1) FROM teams WHERE teams.team_id IS NOT NULL),
groups AS (SELECT CAST(team_id AS TEXT) AS team FROM teams WHERE team_id IS NOT NULL UNION ALL SELECT '')
SELECT g.team, s.pipeline_id, s.stage_id, q.* FROM groups g CROSS JOIN m_stages s
CROSS JOIN LATERAL (WITH v AS ({inner} AND {stage} AND t.team_id = g.team
                               UNION ALL {inner} AND {stage} AND g.team = '' AND t.team_id IS NULL)
                    {aggregate}) q
WHERE s.org_id = :org"""


NUMERIC_KEYS = ("position",)


def stats_sql(inner: str, keys: list[str], dialect: str = "sqlite", extra: str = "") -> str:
    """n, mean, total, median, p75 and p90 of column `x` of `inner`, per `keys`.

    PostgreSQL: ordered-set aggregates (percentile_cont(0.5) is the mean of the two middle values and
    percentile_disc(p) the nearest rank, the same definitions); elsewhere window functions. Money keeps the
    window form on both (exact decimals; percentile_cont works in double precision). `extra`: more aggregates
    over the rows of `inner` (e.g. ", SUM(conv) AS converted").
    """
    k = ", ".join(keys)
    if dialect == "postgresql":
        # Ordered-set aggregates group by sorting: byte order ("C") compares far faster than the database's
        # locale and groups the same way (keys are compared for equality only; callers order the rows).
        collated = ", ".join(f'{c} COLLATE "C" AS {c}' if c not in NUMERIC_KEYS else c for c in keys)
        return f"""
SELECT {collated}, COUNT(x) AS n, AVG(x) AS mean, SUM(x) AS total,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median,
       percentile_disc(0.75) WITHIN GROUP (ORDER BY x) AS p75,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY x) AS p90{extra}
FROM ({inner}) v WHERE x IS NOT NULL GROUP BY {", ".join(str(i + 1) for i in range(len(keys)))}"""
    return f"""
WITH v AS ({inner}),
r AS (SELECT v.*, ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY x) AS rn,
             COUNT(*) OVER (PARTITION BY {k}) AS n FROM v WHERE x IS NOT NULL)
SELECT {k}, MAX(n) AS n, AVG(x) AS mean, SUM(x) AS total,
       AVG(CASE WHEN rn = (n + 1) / 2 OR rn = (n + 2) / 2 THEN x END) AS median,
       MAX(CASE WHEN rn = (3 * n + 3) / 4 THEN x END) AS p75,
       MAX(CASE WHEN rn = (9 * n + 9) / 10 THEN x END) AS p90{extra}
FROM r GROUP BY {k}"""


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _rows(session: AsyncSession, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in (await session.execute(sa.text(sql), params)).all()]


def _group(value: str | None) -> str | None:
    return value or None


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


async def rep_names(session: AsyncSession, org_id: str, rep_ids: set[str]) -> dict[str, str | None]:
    ids = sorted(i for i in rep_ids if i)
    if not ids:
        return {}
    rows = await session.execute(sa.text("SELECT rep_id, name FROM m_reps WHERE org_id = :org AND rep_id IN :ids")
                                 .bindparams(sa.bindparam("ids", expanding=True)), {"org": org_id, "ids": ids})
    return {r.rep_id: r.name for r in rows}


async def _name_groups(session: AsyncSession, f: Filters, rows: list[dict[str, Any]], key: str = "group",
                       default: GroupBy = None) -> list[dict[str, Any]]:
    if (f.group_by or default) == "rep":
        names = await rep_names(session, f.org_id, {r[key] for r in rows if r.get(key)})
        for r in rows:
            r["rep_name"] = names.get(r[key]) if r.get(key) else None
    return rows


# ------------------------------------------------------------------ 1. funnel
async def funnel(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    g = f.credited("first").group_sql()
    months = _duration_months(session, f)
    if months is not None and (f.group_by is None or f.group_by in STAY_GROUPS):  # cohort leads by month
        counts = (f"SELECT {_rollup_group(f)} AS g, m.pipeline_id, m.max_position, SUM(m.leads) AS cnt "
                  f"FROM m_reach_months m WHERE {_rollup_where(f)} AND {rollups.month_range(f.params, *months)} "
                  "GROUP BY 1, 2, 3")
    else:
        counts = (f"SELECT g, pipeline_id, max_position, COUNT(*) AS cnt FROM (SELECT {g} AS g, l.lead_id, "
                  f"l.pipeline_id, l.max_position FROM m_leads l WHERE {f.lead_where('pipeline_entered_ts')}) c "
                  "GROUP BY g, pipeline_id, max_position")
    reached_sql = f"""
WITH h AS ({counts}),
gp AS (SELECT DISTINCT g, pipeline_id FROM h)
SELECT gp.g, s.pipeline_id, s.stage_id, s.name, s.position,
       (SELECT COALESCE(SUM(h.cnt), 0) FROM h WHERE h.g = gp.g AND h.pipeline_id = s.pipeline_id
          AND h.max_position >= s.position) AS reached
FROM gp JOIN m_stages s ON s.org_id = :org AND s.pipeline_id = gp.pipeline_id
ORDER BY gp.g, s.pipeline_id, s.position, s.stage_id"""
    reached = await _rows(session, reached_sql, f.params)
    group, source = stays_from(f, "cohort_ts")
    drop_off = ", COUNT(DISTINCT CASE WHEN dropped = 1 THEN lead_id END) AS drop_off"
    months = _duration_months(session, f)
    if months is not None and (f.group_by is None or f.group_by in STAY_GROUPS):
        times = _cohort_stats(f, await rollups.duration_rows(
            session, m_cohort_months, ["owner_id", "team_id", "pipeline_id", "stage_id", "dropped_leads",
                                       "durations"], f.org_id, months, pipeline_id=f.pipeline_id,
            owner_id=f.rep_id))
        sql = None
    elif _dialect(session) == "postgresql" and (f.group_by is None or f.group_by in STAY_GROUPS):
        inner = f"""
SELECT {group} AS g, t.next_ts - t.at_ts AS x, t.lead_id,
       CASE WHEN t.next_kind IN ('lost', 'disqualified') THEN 1 ELSE 0 END AS dropped
{source} AND t.next_ts IS NOT NULL AND t.pipeline_id = t.lead_pipeline_id"""
        aggregate = ("SELECT g, percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median"
                     f"{drop_off} FROM v GROUP BY g")
        sql = per_stage(f, inner, aggregate, per_team=False)
    else:
        stays = f"""
SELECT {group} AS g, t.pipeline_id, t.stage_id, t.next_ts - t.at_ts AS x, t.lead_id,
       CASE WHEN t.next_kind IN ('lost', 'disqualified') THEN 1 ELSE 0 END AS dropped
{source} AND t.pipeline_id = t.lead_pipeline_id"""
        sql = stats_sql(stays, ["g", "pipeline_id", "stage_id"], _dialect(session), drop_off)
    if sql is not None:
        times = {(r["g"], r["pipeline_id"], r["stage_id"]): r for r in await _rows(session, sql, f.params)}
    out: list[dict[str, Any]] = []
    prev: int | None  # the previous stage's count in the group; None at a group's first stage
    prev_key, prev, first = None, 0, 0
    for r in reached:
        key = (r["g"], r["pipeline_id"])
        if key != prev_key:
            prev_key, prev, first = key, None, r["reached"]
        k3 = (r["g"], r["pipeline_id"], r["stage_id"])
        stat = times.get(k3, {})
        out.append({"group": _group(r["g"]), "pipeline_id": r["pipeline_id"], "stage_id": r["stage_id"],
                    "stage_name": r["name"], "position": r["position"], "reached": int(r["reached"]),
                    "conversion_pct": formulas.pct(r["reached"], prev) if prev is not None else None,
                    "conversion_from_first_pct": formulas.pct(r["reached"], first),
                    "drop_off": int(stat.get("drop_off") or 0), "median_days_in_stage": days(_f(stat.get("median")))})
        prev = r["reached"]
    return await _name_groups(session, f, out)


def _cohort_stats(f: Filters, found: list[Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, pipeline, stage) → median (merged sorted durations) and drop_off from m_cohort_months rows."""
    acc: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, []])
    for owner, team, pipeline, stage, dropped, durations in found:
        measures = acc[({None: "", "rep": owner, "team": team}[f.group_by], pipeline, stage)]
        measures[0] += dropped
        measures[1].append(durations)
    return {k: {"drop_off": dropped, "median": rollups.median_and_p75(rollups.merged(runs))[0]}
            for k, (dropped, runs) in acc.items()}


# ------------------------------------------------------------------ 2. win rate
async def win_rate(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    f.credited("credit")
    sql = f"""
SELECT {f.group_sql()} AS g, SUM(CASE WHEN l.outcome = 'won' THEN 1 ELSE 0 END) AS won,
       SUM(CASE WHEN l.outcome = 'lost' THEN 1 ELSE 0 END) AS lost
FROM m_leads l WHERE {f.lead_where('closed_ts')} AND l.outcome IN ('won', 'lost') GROUP BY 1 ORDER BY 1"""
    rows = [{"group": _group(r["g"]), "won": int(r["won"]), "lost": int(r["lost"]),
             "win_rate_pct": formulas.win_rate(int(r["won"]), int(r["lost"]))}
            for r in await _rows(session, sql, f.params)]
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 3. deal size
WON_VALUE = "COALESCE(l.won_value, l.value)"
WON_CURRENCY = "COALESCE(l.won_currency, l.currency, '')"


async def deal_size(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    f.credited("credit")
    months = _duration_months(session, f)
    found: list[dict[str, Any]]
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_won_months
        per_group: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
        for owner, team, currency, _, won_values in await rollups.duration_rows(
                session, m_won_months, ["owner_id", "team_id", "currency", "deals", "won_values"], f.org_id, months,
                pipeline_id=f.pipeline_id, owner_id=f.rep_id):
            per_group[({None: "", "rep": owner, "team": team}[f.group_by], currency)] += won_values
        found = [{"g": g, "currency": currency, "n": len(values), "total": sum(values, Decimal(0)),
                  "mean": sum(values, Decimal(0)) / len(values), "median": formulas.median(values)}
                 for (g, currency), values in sorted(per_group.items())]
    else:
        found = await _rows(session, stats_sql(
            f"SELECT {f.group_sql()} AS g, {WON_CURRENCY} AS currency, {WON_VALUE} AS x FROM m_leads l "
            f"WHERE {f.lead_where('closed_ts')} AND l.outcome = 'won'", ["g", "currency"]) + " ORDER BY 1, 2",
            f.params)
    rows = [{"group": _group(r["g"]), "currency": r["currency"] or None, "deals": int(r["n"]),
             "total": formulas.money(r["total"]), "mean": formulas.money(r["mean"]),
             "median": formulas.money(r["median"])} for r in found]
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 4. sales cycle and ask-to-decision
async def sales_cycle(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    g = f.credited("credit").group_sql()
    cycle = (f"SELECT {g} AS g, l.closed_ts - l.created_ts AS x FROM m_leads l "
             f"WHERE {f.lead_where('closed_ts')} AND l.outcome = 'won' AND l.created_ts IS NOT NULL")
    ask = (f"SELECT {g} AS g, l.closed_ts - l.ask_entered_ts AS x FROM m_leads l "
           f"WHERE {f.lead_where('closed_ts')} AND l.outcome IN ('won', 'lost') AND l.ask_entered_ts IS NOT NULL")
    a = {r["g"]: r for r in await _rows(session, stats_sql(cycle, ["g"], _dialect(session)), f.params)}
    b = {r["g"]: r for r in await _rows(session, stats_sql(ask, ["g"], _dialect(session)), f.params)}
    rows = []
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key, {}), b.get(key, {})
        rows.append({"group": _group(key), "won": int(ra.get("n") or 0),
                     "cycle_mean_days": days(_f(ra.get("mean"))), "cycle_median_days": days(_f(ra.get("median"))),
                     "decided_after_ask": int(rb.get("n") or 0),
                     "ask_to_decision_mean_days": days(_f(rb.get("mean"))),
                     "ask_to_decision_median_days": days(_f(rb.get("median")))})
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 5. response time
async def response_time(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    f.credited("first")
    months = _duration_months(session, f)
    if months is not None and f.group_by in (None, "rep", "team"):  # whole months: m_created_months
        per_group: dict[str, list[Any]] = defaultdict(lambda: [0, []])
        for owner, team, leads, durations in await rollups.duration_rows(
                session, m_created_months, ["owner_id", "team_id", "leads", "durations"], f.org_id, months,
                pipeline_id=f.pipeline_id, owner_id=f.rep_id):
            measures = per_group[team if f.group_by == "team" else owner]
            measures[0] += leads
            measures[1].append(durations)
        rows = []
        for key in sorted(per_group):
            leads, packed = per_group[key]
            ordered = rollups.merged(packed).tolist()
            rows.append({"group": _group(key), "leads": leads, "responded": len(ordered),
                         "not_responded": leads - len(ordered),
                         "median_hours": hours(formulas.percentile_cont(ordered, 0.5)),
                         "p90_hours": hours(formulas.nearest_rank(ordered, 90, presorted=True))})
        return await _name_groups(session, f, rows, default="rep")
    g = f.group_sql("rep")
    where = f.lead_where("created_ts") + " AND l.first_owner_id IS NOT NULL"
    inner = f"SELECT {g} AS g, l.first_owner_activity_ts - l.created_ts AS x FROM m_leads l WHERE {where}"
    stats = {r["g"]: r for r in await _rows(session, stats_sql(inner, ["g"], _dialect(session)), f.params)}
    totals = await _rows(session, f"SELECT {g} AS g, COUNT(*) AS leads FROM m_leads l WHERE {where} "
                                  "GROUP BY 1 ORDER BY 1", f.params)
    rows = []
    for t in totals:
        s = stats.get(t["g"], {})
        responded = int(s.get("n") or 0)
        rows.append({"group": _group(t["g"]), "leads": int(t["leads"]), "responded": responded,
                     "not_responded": int(t["leads"]) - responded, "median_hours": hours(_f(s.get("median"))),
                     "p90_hours": hours(_f(s.get("p90")))})
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 6. seed conversion rates
async def conversion(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    f.credited("first")
    sql = f"""
SELECT {f.group_sql()} AS g, COUNT(*) AS created,
  SUM(CASE WHEN l.max_position > l.first_position OR l.outcome = 'won' THEN 1 ELSE 0 END) AS qualified,
  SUM(CASE WHEN l.ask_entered_ts IS NOT NULL OR l.max_position >= a.ask_position THEN 1 ELSE 0 END) AS proposals,
  SUM(CASE WHEN l.outcome = 'won' THEN 1 ELSE 0 END) AS won
FROM m_leads l LEFT JOIN (SELECT pipeline_id, MIN(position) AS ask_position FROM m_stages
                          WHERE org_id = :org AND is_ask GROUP BY pipeline_id) a ON a.pipeline_id = l.pipeline_id
WHERE {f.lead_where('created_ts')} GROUP BY 1 ORDER BY 1"""
    rows = [{"group": _group(r["g"]), "created": int(r["created"]), "qualified": int(r["qualified"]),
             "proposals": int(r["proposals"]), "won": int(r["won"]),
             "qualification_rate_pct": formulas.pct(r["qualified"], r["created"]),
             "proposal_rate_pct": formulas.pct(r["proposals"], r["created"]),
             "close_rate_pct": formulas.pct(r["won"], r["created"])}
            for r in await _rows(session, sql, f.params)]
    return await _name_groups(session, f, rows)


# ------------------------------------------------------------------ 7. activity totals
ACTIVITY_COLUMNS = ("calls", "talk_seconds", "emails_logged", "emails_sequence", "meetings", "demos", "proposals",
                    "notes", "records_entered", "records_updated")
# a rep's own touches: automated sequence emails (logged with the owner as rep_id) are not the rep's work
ACTIVITY_SUM = "(d.calls + d.emails_logged + d.meetings + d.demos + d.proposals)"


def _day_where(f: Filters, from_ts: float | None, to_ts: float | None) -> str:
    f.params["org"] = f.org_id
    parts = ["d.org_id = :org"]
    if from_ts is not None:
        parts.append("d.day >= :from_day")
        f.params["from_day"] = int(from_ts // DAY_S)
    if to_ts is not None:
        parts.append("d.day < :to_day")
        f.params["to_day"] = int(to_ts // DAY_S)
    if f.rep_id is not None:
        parts.append("d.rep_id = :me")
        f.params["me"] = f.rep_id
    return " AND ".join(parts)


ACTIVITY_KINDS = {"calls": "a.kind = 'call'", "emails_logged": "a.kind = 'email' AND a.source <> 'sequence'",
                  "emails_sequence": "a.kind = 'email' AND a.source = 'sequence'", "meetings": "a.kind = 'meeting'",
                  "demos": "a.kind = 'demo'", "proposals": "a.kind = 'proposal'", "notes": "a.kind = 'note'"}


async def _pipeline_activities(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    """Activities on leads whose current pipeline is f.pipeline_id, per rep (or the rep's team) and the same
    UTC days, counted from the activities themselves (the daily counters do not know the lead)."""
    g = "COALESCE(r.team_id, '')" if f.group_by == "team" else "a.rep_id"
    f.params.update(org=f.org_id, pipeline=f.pipeline_id)
    where = ["a.org_id = :org", "l.pipeline_id = :pipeline", "a.rep_id IS NOT NULL"]
    if f.from_ts is not None:
        where.append("a.occurred_ts >= :from_day_ts")
        f.params["from_day_ts"] = (f.from_ts // DAY_S) * DAY_S
    if f.to_ts is not None:
        where.append("a.occurred_ts < :to_day_ts")
        f.params["to_day_ts"] = (f.to_ts // DAY_S) * DAY_S
    if f.rep_id is not None:
        where.append("a.rep_id = :me")
        f.params["me"] = f.rep_id
    counts = ", ".join(f"SUM(CASE WHEN {c} THEN 1 ELSE 0 END) AS {name}" for name, c in ACTIVITY_KINDS.items())
    return await _rows(session, f"""
SELECT {g} AS g, {counts},
       SUM(CASE WHEN a.kind = 'call' THEN COALESCE(a.duration_seconds, 0) ELSE 0 END) AS talk_seconds
FROM m_activities a JOIN m_leads l ON l.org_id = a.org_id AND l.lead_id = a.lead_id
LEFT JOIN m_reps r ON r.org_id = a.org_id AND r.rep_id = a.rep_id
WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1""", f.params)


async def activities(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    if f.pipeline_id is not None:
        rows = []
        for r in await _pipeline_activities(session, f):
            row: dict[str, Any] = {"group": _group(r["g"]), **{c: int(r[c] or 0) for c in ACTIVITY_KINDS}}
            row.update(records_entered=None, records_updated=None,  # not known per pipeline
                       talk_minutes=round(int(r["talk_seconds"] or 0) / 60.0, 2))
            rows.append(row)
        return await _name_groups(session, f, rows, default="rep")
    g = "COALESCE(r.team_id, '')" if f.group_by == "team" else "d.rep_id"
    sums = ", ".join(f"SUM(d.{c}) AS {c}" for c in ACTIVITY_COLUMNS)
    sql = (f"SELECT {g} AS g, {sums} FROM m_rep_daily d LEFT JOIN m_reps r ON r.org_id = d.org_id "
           f"AND r.rep_id = d.rep_id WHERE {_day_where(f, f.from_ts, f.to_ts)} GROUP BY 1 ORDER BY 1")
    rows = []
    for r in await _rows(session, sql, f.params):
        row = {"group": _group(r["g"])}
        row.update({c: int(r[c] or 0) for c in ACTIVITY_COLUMNS if c != "talk_seconds"})
        row["talk_minutes"] = round(int(r["talk_seconds"] or 0) / 60.0, 2)
        rows.append(row)
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 8. production
def money_fields(value: Converted, name: str) -> dict[str, Any]:
    """A converted figure as report fields: `name` (in `currency`), the original amounts per currency, and
    what could not be converted (never inside `name`)."""
    return {name: formulas.money(value.amount), "currency": value.currency,
            f"{name}_by_currency": exchange.amounts(value.by_currency),
            f"{name}_unconverted": exchange.amounts(value.unconverted)}


async def production(session: AsyncSession, f: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    g = f.credited("first").group_sql()
    created = {r["g"]: int(r["n"]) for r in await _rows(
        session, f"SELECT {g} AS g, COUNT(*) AS n FROM m_leads l WHERE {f.lead_where('created_ts')} GROUP BY 1",
        f.params)}
    money = await currencies.setup(session, f.org_id)
    won = await won_money(session, f, money)
    rows = []
    for k in sorted(set(created) | set(won)):
        deals, revenue = won.get(k, (0, Converted(money.currency)))
        rows.append({"group": _group(k), "leads_generated": created.get(k, 0), "deals_won": deals,
                     **money_fields(revenue, "revenue")})
    quarters: list[dict[str, Any]] = []
    if f.from_ts is not None and f.to_ts is not None:
        for q_start, q_end in quarters_overlapping(from_ts(f.from_ts), from_ts(f.to_ts)):
            qf = Filters(org_id=f.org_id, from_ts=to_ts(q_start), to_ts=to_ts(q_end), pipeline_id=f.pipeline_id,
                         rep_id=f.rep_id)
            _, revenue = (await won_money(session, qf, money)).get("", (0, Converted(money.currency)))
            reps = await quota_reps(session, f.org_id, q_start.date(), q_end.date(), f.rep_id)
            quarters.append({"quarter_start": q_start.date().isoformat(), **money_fields(revenue, "revenue"),
                             "quota_reps": reps,
                             "avg_revenue_per_rep": formulas.money(revenue.amount / reps) if reps else None})
    return await _name_groups(session, f, rows), quarters


async def quota_reps(session: AsyncSession, org_id: str, start: date, end: date, rep_id: str | None = None) -> int:
    """Reps carrying a quota for a period that overlaps [start, end) (month, quarter or year quotas)."""
    params: dict[str, Any] = {"org": org_id, "start": start, "end": end}
    me = ""
    if rep_id is not None:
        me, params["me"] = " AND q.scope_id = :me", rep_id
    found = await _rows(session, "SELECT q.scope_id, q.period, q.period_start FROM quotas q WHERE q.org_id = :org "
                                 f"AND q.scope = 'rep' AND q.period_start < :end{me}", params)
    reps = set()
    for q in found:
        begun = as_day(q["period_start"])
        _, ends = period_bounds(q["period"], datetime(begun.year, begun.month, begun.day))
        if ends.date() > start:
            reps.add(q["scope_id"])
    return len(reps)


def as_day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def won_money(session: AsyncSession, f: Filters, money: currencies.Setup, target: str | None = None
                    ) -> dict[str, tuple[int, Converted]]:
    """Per group: deals won and their value converted into `target` (default: the reporting currency), for
    wins in [from, to) credited to the owner at the win. Each won value (LeadWon's, else the lead's) is
    converted at the rate in force on the day of the win. Whole months whose wins are all in the target
    currency are read from m_closed_months; otherwise the wins are summed per currency and day."""
    target = target or money.currency
    f.credited("credit")
    months = _duration_months(session, f)
    out: dict[str, tuple[int, Converted]] = {}
    if months is not None and f.group_by in (None, "rep", "team") and not await _foreign_wins(
            session, f, months, target):
        for r in await _rows(session, f"SELECT {_rollup_group(f)} AS g, SUM(m.leads) AS n, SUM(m.value) AS revenue "
                                      f"FROM m_closed_months m WHERE {_rollup_where(f)} AND m.outcome = 'won' AND "
                                      f"{rollups.month_range(f.params, *months)} GROUP BY 1", f.params):
            revenue = Decimal(r["revenue"] or 0)
            out[r["g"]] = (int(r["n"]), Converted(target, revenue, {target: revenue} if revenue else {}))
        return out
    f.params["target"] = target
    # the UTC day number (periods.day_number); SQLite's CAST truncates (the same for times after 1970),
    # PostgreSQL's rounds, so it floors first
    day = (f"CAST(FLOOR(l.closed_ts / {DAY_S}) AS INTEGER)" if _dialect(session) == "postgresql"
           else f"CAST(l.closed_ts / {DAY_S} AS INTEGER)")
    found = await _rows(session, f"""
SELECT {f.group_sql()} AS g, {WON_CURRENCY} AS currency,
       CASE WHEN {WON_CURRENCY} = :target THEN 0 ELSE {day} END AS day,
       COUNT(*) AS n, SUM(COALESCE({WON_VALUE}, 0)) AS amount
FROM m_leads l WHERE {f.lead_where('closed_ts')} AND l.outcome = 'won' GROUP BY 1, 2, 3""", f.params)
    for r in found:
        deals, value = out.get(r["g"], (0, Converted(target)))
        value.add(money.rates, r["currency"], r["amount"], exchange.day_of(r["day"]))
        out[r["g"]] = (deals + int(r["n"]), value)
    return out


async def _foreign_wins(session: AsyncSession, f: Filters, months: tuple[int | None, int | None], target: str
                        ) -> bool:
    """Any win in these months in another currency than `target` (or with none), from m_won_months."""
    f.params["target"] = target
    return bool(await _rows(session, f"SELECT 1 AS x FROM m_won_months m WHERE {_rollup_where(f)} AND "
                                     f"{rollups.month_range(f.params, *months)} AND m.currency <> :target LIMIT 1",
                            f.params))


# ------------------------------------------------------------------ 9. forecast
async def forecast(session: AsyncSession, f: Filters, period: Period, moment: datetime) -> list[dict[str, Any]]:
    f.credited("credit")
    money = await currencies.setup(session, f.org_id)
    start, end = period_bounds(period, moment)
    today = (f.now or moment).date()
    won = await won_money(session, replace(f, from_ts=to_ts(start), to_ts=to_ts(end), params={}), money)
    f.params.update(ps=to_ts(start), pe=to_ts(end))
    if _rollup_serves(session, f):  # the history's counts are monthly sums
        f.params.update(first_month=month_number(f.params["ps"]))
        history_sql = f"""
SELECT {_rollup_group(f)} AS g, SUM(CASE WHEN m.outcome = 'won' THEN m.leads ELSE 0 END) AS hist_won,
  SUM(CASE WHEN m.outcome = 'lost' THEN m.leads ELSE 0 END) AS hist_lost
FROM m_closed_months m WHERE {_rollup_where(f)} AND m.outcome IN ('won', 'lost') AND m.month < :first_month
GROUP BY 1"""
    else:
        history_sql = f"""
SELECT {f.group_sql()} AS g, SUM(CASE WHEN l.outcome = 'won' THEN 1 ELSE 0 END) AS hist_won,
  SUM(CASE WHEN l.outcome = 'lost' THEN 1 ELSE 0 END) AS hist_lost
FROM m_leads l WHERE {f.lead_where(None)} AND l.outcome IN ('won', 'lost') AND l.closed_ts < :ps GROUP BY 1"""
    history = {r["g"]: r for r in await _rows(session, history_sql, f.params)}
    open_sql = f"""
SELECT {f.group_sql()} AS g, l.currency, SUM(COALESCE(l.value, 0)) AS open_pipeline,
  SUM(COALESCE(l.value, 0) * COALESCE(l.current_win_probability, 0)) AS weighted_open
FROM m_leads l WHERE {f.lead_where(None)} AND l.outcome = 'open' AND l.pipeline_entered_ts IS NOT NULL
  AND l.expected_close_ts >= :ps AND l.expected_close_ts < :pe GROUP BY 1, 2"""
    pipeline: dict[str, tuple[Converted, Converted]] = {}
    for r in await _rows(session, open_sql, f.params):
        open_value, weighted = pipeline.setdefault(r["g"], (Converted(money.currency), Converted(money.currency)))
        open_value.add(money.rates, r["currency"], r["open_pipeline"], today)
        weighted.add(money.rates, r["currency"], r["weighted_open"], today)
    rows = []
    for g in sorted(set(won) | set(history) | set(pipeline)):
        won_so_far = won.get(g, (0, Converted(money.currency)))[1]
        open_value, weighted = pipeline.get(g, (Converted(money.currency), Converted(money.currency)))
        hist = history.get(g, {})
        hist_won, hist_lost = int(hist.get("hist_won") or 0), int(hist.get("hist_lost") or 0)
        rate = Decimal(hist_won) / Decimal(hist_won + hist_lost) if hist_won + hist_lost else Decimal(0)
        unconverted = Converted(money.currency)
        for part in (won_so_far, open_value):
            unconverted.merge(Converted(money.currency, unconverted=part.unconverted))
        rows.append({"group": _group(g), "period": period, "period_start": start.isoformat(),
                     "period_end": end.isoformat(), "currency": money.currency,
                     "won_so_far": formulas.money(won_so_far.amount),
                     "open_pipeline": formulas.money(open_value.amount),
                     "weighted_by_stage": formulas.money(won_so_far.amount + weighted.amount),
                     "historical_win_rate_pct": formulas.pct(hist_won, hist_won + hist_lost) or 0.0,
                     "weighted_by_history": formulas.money(won_so_far.amount + open_value.amount * rate),
                     "best_case": formulas.money(won_so_far.amount + open_value.amount),
                     "won_by_currency": exchange.amounts(won_so_far.by_currency),
                     "open_by_currency": exchange.amounts(open_value.by_currency),
                     "unconverted": exchange.amounts(unconverted.unconverted)})
    return await _name_groups(session, f, rows)


def _rollup_serves(session: AsyncSession, f: Filters) -> bool:
    """The monthly rollups (kept on PostgreSQL) carry owner, team and pipeline ('' for none): they answer these
    groups and filters."""
    return (_dialect(session) == "postgresql" and f.group_by in (None, "rep", "team") and f.pipeline_id != ""
            and f.rep_id != "")


def _rollup_group(f: Filters, default: GroupBy = None) -> str:
    return {None: "''", "rep": "m.owner_id", "team": "m.team_id"}[f.group_by or default]


def _rollup_where(f: Filters) -> str:
    f.params["org"] = f.org_id
    parts = ["m.org_id = :org"]
    if f.pipeline_id is not None:
        parts.append("m.pipeline_id = :pipeline")
        f.params["pipeline"] = f.pipeline_id
    if f.rep_id is not None:
        parts.append("m.owner_id = :me")
        f.params["me"] = f.rep_id
    return " AND ".join(parts)


async def won_between(session: AsyncSession, org_id: str, scope: str, start_ts: float, end_ts: float,
                      currency: str | None = None) -> dict[str, Converted]:
    """Won value per scope id ('' for the org) for wins in [start, end), credited to the owner at the win,
    converted into `currency` (default: the reporting currency) at each win's date."""
    f = Filters(org_id=org_id, from_ts=start_ts, to_ts=end_ts, group_by={"org": None, "team": "team",
                                                                         "rep": "rep"}[scope])
    money = await currencies.setup(session, org_id)
    return {g: value for g, (_, value) in (await won_money(session, f, money, currency)).items()}


# ------------------------------------------------------------------ 11. adoption
async def adoption(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    g = f.group_sql("rep")
    now_ts = to_ts(f.now)
    f.params["now"] = now_ts
    coverage_sql = f"""
SELECT {g} AS g, COUNT(*) AS open_leads,
  SUM(CASE WHEN l.pipeline_entered_ts IS NOT NULL AND l.owner_id IS NOT NULL AND NOT l.open_task_overdue
       AND NOT COALESCE(l.open_task_due_ts < :now, FALSE) THEN 1 ELSE 0 END) AS covered
FROM m_leads l WHERE {f.lead_where(None)} AND l.is_created AND l.outcome = 'open' GROUP BY 1"""
    coverage = {r["g"]: r for r in await _rows(session, coverage_sql, f.params)}
    compliant = ("CASE WHEN (t.next_kind = 'stage' AND t.next_reason = 'goal_met') OR t.tasks_done "
                 "OR t.next_kind = 'won' THEN 1 ELSE 0 END")
    exits = "t.next_kind IN ('stage', 'won', 'lost', 'disqualified')"
    split = rollups.edges(f.params, f.from_ts, f.to_ts, "t.next_ts") if _rollup_serves(session, f) else None
    if split is not None:  # whole months from m_exit_months, the partial months at the edges from the stays
        months, edge = split
        group, source = stays_from(f, None, default="rep")
        compliance_sql = f"""
SELECT g, SUM(exits) AS exits, SUM(compliant) AS compliant FROM (
  SELECT {_rollup_group(f, "rep")} AS g, m.exits, m.compliant FROM m_exit_months m
  WHERE {_rollup_where(f)} AND {months}
  UNION ALL
  SELECT {group}, 1, {compliant} {source} AND t.next_ts IS NOT NULL AND {exits} AND {edge}) x
GROUP BY 1"""
    else:
        group, source = stays_from(f, "next_ts", default="rep")
        compliance_sql = f"""
SELECT {group} AS g, COUNT(*) AS exits, SUM({compliant}) AS compliant
{source} AND {exits}
GROUP BY 1"""
    compliance = {r["g"]: r for r in await _rows(session, compliance_sql, f.params)}
    rows = []
    for key in sorted(set(coverage) | set(compliance)):
        c, k = coverage.get(key, {}), compliance.get(key, {})
        rows.append({"group": _group(key), "open_leads": int(c.get("open_leads") or 0),
                     "covered": int(c.get("covered") or 0),
                     "coverage_pct": formulas.pct(c.get("covered") or 0, c.get("open_leads")),
                     "stage_exits": int(k.get("exits") or 0), "compliant_exits": int(k.get("compliant") or 0),
                     "compliance_pct": formulas.pct(k.get("compliant") or 0, k.get("exits"))})
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 12. coaching
def _stays(f: Filters) -> str:
    """Ended stays entered in [from, to), with the rep and team of their lead (all reps: a rep compares
    with the team)."""
    _, source = stays_from(f, "at_ts", own_only=False)
    return f"""
SELECT COALESCE(t.owner_id, '') AS rep, COALESCE(t.team_id, '') AS team, t.pipeline_id, t.stage_id,
       t.position, t.next_ts - t.at_ts AS x,
       CASE WHEN (t.next_kind = 'stage' AND t.next_position > t.position) OR t.next_kind = 'won' THEN 1 ELSE 0 END
         AS conv
{source} AND t.next_ts IS NOT NULL"""


def _ended_stays(f: Filters) -> str:
    """`_stays` for `per_stage` with per_team (the team and stage come from the index range)."""
    parts = stay_conditions(f, "at_ts", own_only=False)
    return f"""
SELECT COALESCE(t.owner_id, '') AS rep, t.position, t.next_ts - t.at_ts AS x,
       CASE WHEN (t.next_kind = 'stage' AND t.next_position > t.position) OR t.next_kind = 'won' THEN 1 ELSE 0 END
         AS conv
FROM m_timeline t WHERE {' AND '.join(parts)} AND t.next_ts IS NOT NULL"""


async def _coaching_stats(session: AsyncSession, f: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per rep, team, stage and position; per team and stage): n, median, converted."""
    converted = ", SUM(conv) AS converted"
    months = _duration_months(session, f)
    if months is not None:
        return _stay_stats(await rollups.duration_rows(session, m_stay_months, STAY_ROLLUP_COLUMNS, f.org_id, months,
                                                       pipeline_id=f.pipeline_id))
    if _dialect(session) == "postgresql":  # both levels in one pass per team and stage
        aggregate = ("SELECT rep, position, GROUPING(rep, position) AS team_level, COUNT(*) AS n, "
                     "percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median, SUM(conv) AS converted "
                     "FROM v GROUP BY GROUPING SETS ((rep, position), ())")
        both = [r for r in await _rows(session, per_stage(f, _ended_stays(f), aggregate, per_team=True), f.params)
                if r["n"]]
        return ([r for r in both if not r["team_level"]], [r for r in both if r["team_level"]])
    stays = _stays(f)
    return (await _rows(session, stats_sql(stays, ["rep", "team", "pipeline_id", "stage_id", "position"],
                                           _dialect(session), converted), f.params),
            await _rows(session, stats_sql(stays, ["team", "pipeline_id", "stage_id"], _dialect(session), converted),
                        f.params))


def _duration_months(session: AsyncSession, f: Filters) -> tuple[int | None, int | None] | None:
    """The months of the rollups that make up the period exactly (PostgreSQL), else None."""
    if _dialect(session) != "postgresql" or f.pipeline_id == "" or f.rep_id == "":
        return None
    return rollups.whole_month_period(f.from_ts, f.to_ts)


STAY_ROLLUP_COLUMNS = ["owner_id", "team_id", "stage_pipeline_id", "stage_id", "position", "stays", "converted",
                       "durations"]


def _stay_stats(found: list[tuple[Any, ...]], *, per_rep: bool = True
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per rep, team, stage and position (with per_rep): n, converted and median (of the merged sorted
    durations, PostgreSQL's percentile_cont); per team and stage the same and p75 (nearest rank); from
    m_stay_months rows (STAY_ROLLUP_COLUMNS). A team's figures merge its reps' groups."""
    reps: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, []])
    for owner, team, pipeline, stage, position, stays, converted, durations in found:
        measures = reps[(owner if per_rep else "", team, pipeline, stage, position)]
        measures[0] += stays
        measures[1] += converted
        measures[2].append(durations)
    teams: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, []])
    for (_, team, pipeline, stage, _), (stays, converted, durations) in reps.items():
        measures = teams[(team, pipeline, stage)]
        measures[0] += stays
        measures[1] += converted
        measures[2] += durations
    rep_rows = []
    for (owner, team, pipeline, stage, position), (stays, converted, durations) in reps.items() if per_rep else ():
        median, _ = rollups.median_and_p75(rollups.merged(durations))
        rep_rows.append({"rep": owner, "team": team, "pipeline_id": pipeline, "stage_id": stage,
                         "position": position, "n": stays, "converted": converted, "median": median})
    team_rows = []
    for (team, pipeline, stage), (stays, converted, durations) in teams.items():
        median, p75 = rollups.median_and_p75(rollups.merged(durations))
        team_rows.append({"team": team, "pipeline_id": pipeline, "stage_id": stage, "n": stays,
                          "converted": converted, "median": median, "p75": p75})
    return rep_rows, team_rows


async def coaching(session: AsyncSession, f: Filters
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    rep_stats, team_rows = await _coaching_stats(session, f)
    # each team and stage's figures once (some 450), not once per rep row (some 4,500)
    team_view = {(t["team"], t["pipeline_id"], t["stage_id"]): (
        int(t["n"]), formulas.pct(int(t["converted"]), t["n"]), _f(t["median"]), days(_f(t["median"])))
        for t in team_rows}
    names = await rep_names(session, f.org_id, {r["rep"] for r in rep_stats})
    rows = []
    unassigned: list[dict[str, Any]] = []  # nobody owned these at the stay's end: a signal, not a rep
    for r in sorted(rep_stats, key=lambda r: (r["rep"], r["pipeline_id"], r["position"], r["stage_id"])):
        if not r["rep"]:
            if f.rep_id is None:
                unassigned.append({"team_id": r["team"] or None, "pipeline_id": r["pipeline_id"],
                                   "stage_id": r["stage_id"], "exits": int(r["n"])})
            continue
        if f.rep_id is not None and r["rep"] != f.rep_id:
            continue
        team_exits, t_conv, team_med, team_med_days = team_view[(r["team"], r["pipeline_id"], r["stage_id"])]
        converted = int(r["converted"])
        rep_conv = formulas.pct(converted, r["n"])
        rep_med = _f(r["median"])
        rows.append({"rep_id": r["rep"] or None, "rep_name": names.get(r["rep"]), "team_id": r["team"] or None,
                     "pipeline_id": r["pipeline_id"], "stage_id": r["stage_id"], "position": r["position"],
                     "exits": int(r["n"]), "converted": converted, "conversion_pct": rep_conv,
                     "team_exits": team_exits, "team_conversion_pct": t_conv,
                     "conversion_vs_team_pts": (round(rep_conv - t_conv, 2)
                                                if rep_conv is not None and t_conv is not None else None),
                     "median_days_in_stage": days(rep_med), "team_median_days_in_stage": team_med_days,
                     "median_vs_team_ratio": (round(rep_med / team_med, 4) if rep_med is not None and team_med
                                              else None)})
    # stalls_most: the stage where the rep is slowest against the team, only where the rep is slower (ratio > 1)
    stalls: dict[str, dict[str, Any] | None] = {row["rep_id"]: None for row in rows}
    for row in rows:
        ratio = row["median_vs_team_ratio"]
        best = stalls[row["rep_id"]]
        if ratio is not None and ratio > 1 and (best is None or ratio > best["median_vs_team_ratio"]):
            stalls[row["rep_id"]] = row
    names_of = {row["rep_id"]: row["rep_name"] for row in rows}
    stalls_most = [{"rep_id": k, "rep_name": names_of[k], "slower_than_team": v is not None,
                    "pipeline_id": v["pipeline_id"] if v else None, "stage_id": v["stage_id"] if v else None,
                    "median_days_in_stage": v["median_days_in_stage"] if v else None,
                    "team_median_days_in_stage": v["team_median_days_in_stage"] if v else None,
                    "median_vs_team_ratio": v["median_vs_team_ratio"] if v else None}
                   for k, v in sorted(stalls.items())]
    return rows, stalls_most, unassigned


STALLED_LIMIT = 500
# The oldest entries per team and stage read first (`probe`): the STALLED_LIMIT-th largest excess among them is
# a floor that at least STALLED_LIMIT leads reach, so only the leads at or above it are ranked (some hundreds,
# not the ~120k open leads past their p75 at 1M leads). The index range (entered ≤ now − p75 − floor, plus a
# second of slack for rounding) only narrows the scan; the exact comparison decides.
STALLED_PROBE = 2


def _stalled_sql(f: Filters, lead_filters: str) -> str:
    """PostgreSQL: the thresholds per team and stage (given as arrays p_team, p_pipeline_id, p_stage_id, p_p75),
    then per team and stage the open leads in it (ix_m_leads_open_stage), the leads with no team against the ''
    team like COALESCE(team_id, ''); the STALLED_LIMIT most over it."""
    p75 = ("SELECT team, pipeline_id, stage_id, 1 AS n, p75 FROM unnest(CAST(:p_team AS TEXT[]), "
           "CAST(:p_pipeline_id AS TEXT[]), CAST(:p_stage_id AS TEXT[]), CAST(:p_p75 AS FLOAT8[])) "
           "AS p(team, pipeline_id, stage_id, p75)")
    leads = ("SELECT l.lead_id, l.owner_id, l.team_id, l.current_stage_entered_ts FROM m_leads l "
             "WHERE l.org_id = :org AND l.outcome = 'open' AND l.pipeline_id = p.pipeline_id "
             "AND l.current_stage_id = p.stage_id AND l.current_stage_entered_ts IS NOT NULL "
             f"AND :now - l.current_stage_entered_ts > p.p75{lead_filters}")
    oldest = f"ORDER BY l.current_stage_entered_ts LIMIT {STALLED_PROBE}"
    return f"""
WITH p AS MATERIALIZED ({p75}),
probe AS MATERIALIZED (SELECT (:now - l.current_stage_entered_ts) - p.p75 AS over
          FROM p CROSS JOIN LATERAL (({leads} AND l.team_id = p.team {oldest})
                                     UNION ALL ({leads} AND p.team = '' AND l.team_id IS NULL {oldest})) l
          WHERE p.n > 0),
cut AS MATERIALIZED (SELECT COALESCE((SELECT over FROM probe ORDER BY over DESC OFFSET {STALLED_LIMIT - 1} LIMIT 1),
                        CAST('-Infinity' AS FLOAT8)) AS over)
SELECT l.lead_id, l.owner_id, l.team_id, p.pipeline_id, p.stage_id, :now - l.current_stage_entered_ts AS age, p.p75
FROM p CROSS JOIN cut CROSS JOIN LATERAL (
  {leads} AND l.team_id = p.team AND l.current_stage_entered_ts <= :now - p.p75 - cut.over + 1
  UNION ALL {leads} AND p.team = '' AND l.team_id IS NULL
            AND l.current_stage_entered_ts <= :now - p.p75 - cut.over + 1) l
WHERE p.n > 0 AND (:now - l.current_stage_entered_ts) - p.p75 >= cut.over
ORDER BY (:now - l.current_stage_entered_ts) - p.p75 DESC, l.lead_id LIMIT {STALLED_LIMIT}"""


MIN_BASELINE_STAYS = 5  # fewer completed stays than this are no baseline: one quick stay would be the threshold
TRAILING_DAYS = 365
P75_AGGREGATE = "SELECT COUNT(*) AS n, percentile_disc(0.75) WITHIN GROUP (ORDER BY x) AS p75 FROM v"


async def _team_stage_p75(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    """Per team and stage, over the ended stays entered in [from, to): n and the 75th percentile (nearest rank)."""
    months = _duration_months(session, f)
    if months is not None:  # from m_stay_months
        return _stay_stats(await rollups.duration_rows(session, m_stay_months, STAY_ROLLUP_COLUMNS, f.org_id, months,
                                                       pipeline_id=f.pipeline_id), per_rep=False)[1]
    if _dialect(session) == "postgresql":
        return [r for r in await _rows(session, per_stage(f, _ended_stays(f), P75_AGGREGATE, per_team=True), f.params)
                if r["n"]]
    return await _rows(session, stats_sql(_stays(f), ["team", "pipeline_id", "stage_id"], _dialect(session)), f.params)


async def _trailing_p75(session: AsyncSession, f: Filters, key: tuple[str, str, str], end_ts: float,
                        whole_org: bool) -> tuple[int, float | None]:
    """n and p75 of the ended stays of one stage (the team's, or every team's) entered in the TRAILING_DAYS
    before `end_ts`."""
    team, pipeline_id, stage_id = key
    params: dict[str, Any] = {"org": f.org_id, "p": pipeline_id, "s": stage_id, "a": end_ts - TRAILING_DAYS * DAY_S,
                              "b": end_ts, "team": team}
    where = ["t.org_id = :org", "t.kind = 'stage'", "t.next_ts IS NOT NULL", "t.pipeline_id = :p",
             "t.stage_id = :s", "t.at_ts >= :a", "t.at_ts < :b"]
    if not whole_org:
        where.append("t.team_id = :team" if team else "t.team_id IS NULL")
    if f.pipeline_id is not None:
        where.append("t.lead_pipeline_id = :pipeline")
        params["pipeline"] = f.pipeline_id
    values = sorted(r["x"] for r in await _rows(
        session, f"SELECT t.next_ts - t.at_ts AS x FROM m_timeline t WHERE {' AND '.join(where)}", params))
    return len(values), formulas.nearest_rank(values, 75, presorted=True)


async def _waiting_without_baseline(session: AsyncSession, f: Filters, lead_filters: str,
                                    period: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The (team, pipeline, stage) where open leads with an owner wait and the period gives no baseline: on
    PostgreSQL probed per candidate (every team of the org's reps or of the period's stays, and no team, times
    every stage) with one index lookup each, instead of reading every open lead."""
    f.params["org"] = f.org_id
    if _dialect(session) != "postgresql":
        return {(r["team"], r["pipeline_id"], r["stage_id"]) for r in await _rows(session, f"""
SELECT DISTINCT COALESCE(l.team_id, '') AS team, l.pipeline_id, l.current_stage_id AS stage_id FROM m_leads l
WHERE l.org_id = :org AND l.outcome = 'open' AND l.current_stage_id IS NOT NULL AND l.owner_id IS NOT NULL
{lead_filters}""", f.params)} - period
    teams = {r["team_id"] or "" for r in await _rows(session, "SELECT DISTINCT team_id FROM m_reps WHERE org_id = :org",
                                                       f.params)} | {k[0] for k in period} | {""}
    stages = [(r["pipeline_id"], r["stage_id"]) for r in await _rows(
        session, "SELECT pipeline_id, stage_id FROM m_stages WHERE org_id = :org", f.params)]
    candidates = sorted((t, p, st) for t in teams for p, st in stages if (t, p, st) not in period)
    if not candidates:
        return set()
    open_leads = ("SELECT 1 FROM m_leads l WHERE l.org_id = :org AND l.outcome = 'open' AND l.pipeline_id = k.p "
                  f"AND l.current_stage_id = k.s AND l.owner_id IS NOT NULL{lead_filters}")
    params = {**f.params, "k_team": [c[0] for c in candidates], "k_p": [c[1] for c in candidates],
              "k_s": [c[2] for c in candidates]}
    return {(r["team"], r["p"], r["s"]) for r in await _rows(session, f"""
SELECT k.team, k.p, k.s
FROM unnest(CAST(:k_team AS TEXT[]), CAST(:k_p AS TEXT[]), CAST(:k_s AS TEXT[])) AS k(team, p, s)
WHERE CASE WHEN k.team = '' THEN EXISTS ({open_leads} AND l.team_id IS NULL)
           ELSE EXISTS ({open_leads} AND l.team_id = k.team) END""", params)}


async def stalled_thresholds(session: AsyncSession, f: Filters, lead_filters: str
                             ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(team, pipeline, stage) → {p75, baseline, baseline_stays} for the team-stages where open leads wait
    (`lead_filters`: the conditions on those leads `l`).

    Baseline, the first that has at least MIN_BASELINE_STAYS completed stays: the team's stays entered in
    [from, to) ("team_period"); the team's stays entered in the TRAILING_DAYS before `to` (or now)
    ("team_trailing_year"); every team's stays of the stage in that window ("org_trailing_year"). None: no
    baseline, the leads are not judged."""
    out = {}
    for r in await _team_stage_p75(session, f):
        key = (r["team"], r["pipeline_id"], r["stage_id"])
        if int(r["n"]) >= MIN_BASELINE_STAYS and r["p75"] is not None:
            out[key] = {"p75": float(r["p75"]), "baseline": "team_period", "baseline_stays": int(r["n"])}
    waiting = await _waiting_without_baseline(session, f, lead_filters, set(out))
    end_ts = f.to_ts if f.to_ts is not None else to_ts(f.now)
    for key in sorted(waiting - set(out)):
        for whole_org, name in ((False, "team_trailing_year"), (True, "org_trailing_year")):
            # arg-type: end_ts is never None, as a report's filters always carry `now` (entrypoints/routes.py)
            n, p75 = await _trailing_p75(session, f, key, end_ts, whole_org)  # type: ignore[arg-type]
            if n >= MIN_BASELINE_STAYS and p75 is not None:
                out[key] = {"p75": float(p75), "baseline": name, "baseline_stays": n}
                break
    return out


async def stalled_deals(session: AsyncSession, f: Filters) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    f.params["now"] = to_ts(f.now)
    me = " AND l.owner_id = :me" if f.rep_id is not None else ""
    if f.rep_id is not None:
        f.params["me"] = f.rep_id
    pipeline = " AND l.pipeline_id = :pipeline" if f.pipeline_id is not None else ""
    if f.pipeline_id is not None:
        f.params["pipeline"] = f.pipeline_id
    f.params["org"] = f.org_id
    thresholds = await stalled_thresholds(session, f, me + pipeline)
    if _dialect(session) == "postgresql":
        keys = sorted(thresholds)
        f.params.update(p_team=[k[0] for k in keys], p_pipeline_id=[k[1] for k in keys],
                        p_stage_id=[k[2] for k in keys], p_p75=[thresholds[k]["p75"] for k in keys])
        found = await _rows(session, _stalled_sql(f, me + pipeline + " AND l.owner_id IS NOT NULL"), f.params)
    else:  # the embedded mode's few leads, judged here
        found = []
        for r in await _rows(session, f"""
SELECT l.lead_id, l.owner_id, l.team_id, l.pipeline_id, l.current_stage_id AS stage_id,
       :now - l.current_stage_entered_ts AS age FROM m_leads l
WHERE l.org_id = :org AND l.outcome = 'open' AND l.current_stage_entered_ts IS NOT NULL AND l.owner_id IS NOT NULL
  {me}{pipeline}""", f.params):
            limit = thresholds.get((r["team_id"] or "", r["pipeline_id"], r["stage_id"]))
            if limit is not None and r["age"] > limit["p75"]:
                found.append({**r, "p75": limit["p75"]})
        found.sort(key=lambda r: (-(r["age"] - r["p75"]), r["lead_id"]))
        found = found[:STALLED_LIMIT]
    names = await rep_names(session, f.org_id, {r["owner_id"] for r in found if r["owner_id"]})
    rows = []
    for r in found:
        basis = thresholds[(r["team_id"] or "", r["pipeline_id"], r["stage_id"])]
        rows.append({"lead_id": r["lead_id"], "rep_id": r["owner_id"], "rep_name": names.get(r["owner_id"]),
                     "team_id": r["team_id"], "pipeline_id": r["pipeline_id"], "stage_id": r["stage_id"],
                     "days_in_stage": days(_f(r["age"])), "team_p75_days": days(_f(r["p75"])),
                     # operator: a stalled row has an age above its p75, so neither is None
                     "days_over": days(_f(r["age"]) - _f(r["p75"])),  # type: ignore[operator]
                     "baseline": basis["baseline"], "baseline_stays": basis["baseline_stays"]})
    unassigned: list[dict[str, Any]] = []
    if f.rep_id is None:  # open leads nobody owns: their own signal, not compared with anyone
        unassigned = [{"lead_id": r["lead_id"], "team_id": r["team_id"], "pipeline_id": r["pipeline_id"],
                       "stage_id": r["stage_id"], "days_in_stage": days(_f(r["age"]))}
                      for r in await _rows(session, f"""
SELECT l.lead_id, l.team_id, l.pipeline_id, l.current_stage_id AS stage_id, :now - l.current_stage_entered_ts AS age
FROM m_leads l WHERE l.org_id = :org AND l.owner_id IS NULL AND l.outcome = 'open'
  AND l.current_stage_entered_ts IS NOT NULL{pipeline}
ORDER BY l.current_stage_entered_ts, l.lead_id LIMIT {STALLED_LIMIT}""", f.params)]
    return rows, unassigned


# ------------------------------------------------------------------ 14. hand-overs (account management's view)
async def handovers(session: AsyncSession, f: Filters) -> list[dict[str, Any]]:
    """Won leads now owned by someone other than the rep credited with the win, per current owner (or team)."""
    g = "COALESCE(l.team_id, '')" if f.group_by == "team" else "COALESCE(l.owner_id, '')"
    where = f.credited("current").lead_where("closed_ts")
    sql = f"""
SELECT {g} AS g, {WON_CURRENCY} AS currency, COUNT(*) AS customers, COUNT(DISTINCT l.credit_owner_id) AS closers,
       SUM({WON_VALUE}) AS won_value
FROM m_leads l WHERE {where} AND l.outcome = 'won' AND l.owner_id IS NOT NULL
  AND l.owner_id <> COALESCE(l.credit_owner_id, '') GROUP BY 1, 2 ORDER BY 1, 2"""
    rows = [{"group": _group(r["g"]), "currency": r["currency"] or None, "customers": int(r["customers"]),
             "closers": int(r["closers"]), "won_value": formulas.money(r["won_value"])}
            for r in await _rows(session, sql, f.params)]
    return await _name_groups(session, f, rows, default="rep")


# ------------------------------------------------------------------ 13. leaderboard
async def leaderboard(session: AsyncSession, f: Filters, metric: str, period: Period, moment: datetime
                      ) -> list[dict[str, Any]]:
    start, end = period_bounds(period, moment)
    extra: dict[str, dict[str, Any]] = {}
    if metric in ("revenue", "deals_won"):
        money = await currencies.setup(session, f.org_id)
        period_filters = Filters(org_id=f.org_id, from_ts=to_ts(start), to_ts=to_ts(end), pipeline_id=f.pipeline_id,
                                 group_by="rep")
        won = {rep: v for rep, v in (await won_money(session, period_filters, money)).items() if rep}
        # a win without a value counts 0 (never a null that sorts first)
        values: dict[str, Any] = {rep: (value.amount if metric == "revenue" else deals)
                                  for rep, (deals, value) in won.items()}
        if metric == "revenue":
            extra = {rep: {"currency": value.currency, "revenue_unconverted": exchange.amounts(value.unconverted)}
                     for rep, (_, value) in won.items()}
    elif metric == "activities":
        params = {"org": f.org_id, "d0": int(to_ts(start) // DAY_S), "d1": int(to_ts(end) // DAY_S)}
        values = {r["rep"]: int(r["v"] or 0) for r in await _rows(
            session, f"SELECT d.rep_id AS rep, SUM({ACTIVITY_SUM}) AS v FROM m_rep_daily d WHERE d.org_id = :org "
                     "AND d.day >= :d0 AND d.day < :d1 GROUP BY 1", params)}
    else:  # quota_attainment: each rep's quota of the period, compared in the quota's own currency
        found = await _rows(session, "SELECT q.scope_id, q.amount, q.currency FROM quotas q WHERE q.org_id = :org "
                                     "AND q.scope = 'rep' AND q.period = :period AND q.period_start = :pstart "
                                     "AND q.amount > 0", {"org": f.org_id, "period": period, "pstart": start.date()})
        won_in: dict[str, dict[str, Converted]] = {}
        values = {}
        for q in found:
            if q["currency"] not in won_in:
                won_in[q["currency"]] = await won_between(session, f.org_id, "rep", to_ts(start), to_ts(end),
                                                          q["currency"])
            actual = won_in[q["currency"]].get(q["scope_id"], Converted(q["currency"]))
            values[q["scope_id"]] = round(float(actual.amount * 100 / Decimal(q["amount"])), 2)
            extra[q["scope_id"]] = {"currency": q["currency"], "unconverted": exchange.amounts(actual.unconverted)}
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    if f.rep_id is not None:
        ranked_for = [(rep, v) for rep, v in ranked if rep == f.rep_id]
    else:
        ranked_for = ranked
    names = await rep_names(session, f.org_id, {rep for rep, _ in ranked_for})
    out = []
    for rep, value in ranked_for:
        rank = 1 + sum(1 for _, other in ranked if other > value)  # SQL RANK: ties share a rank
        shown = formulas.money(value) if metric == "revenue" else value
        out.append({"rank": rank, "rep_id": rep, "rep_name": names.get(rep), metric: shown, **extra.get(rep, {})})
    return out


def elapsed(period: Period, moment: datetime, now: datetime) -> float:
    start, end = period_bounds(period, moment)
    return elapsed_share(start, end, now)
