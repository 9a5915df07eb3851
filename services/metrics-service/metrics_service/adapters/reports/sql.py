"""What every report's SQL is made of: the caller's filters as conditions with their parameters, the groups a
report may be split by, and the statistics (median, p75, p90) in each dialect.

Builders are pure: they return a `Sql` (text and the parameters it binds) and change nothing, so one report's
query never depends on the parameters another one left behind. SQL is portable between PostgreSQL and SQLite
(times are epoch seconds); where the two differ, the builder takes the dialect.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Generic, NamedTuple, TypeVar

from ...domain.periods import DAY_S, month_start_ts, whole_months

Dialect = str  # a SQLAlchemy dialect name: "postgresql" or "sqlite"
Params = dict[str, object]
GroupBy = str | None
Number = int | float | Decimal  # a count, sum or average as the dialect returns it (SUM of bigint: a Decimal)
R = TypeVar("R")


@dataclass(frozen=True)
class Sql:
    """A statement or a condition, and the values of the parameters it names (`expanding`: the list-valued ones
    of an `IN :name`)."""

    text: str
    params: Params = field(default_factory=dict)
    expanding: tuple[str, ...] = ()

    def read_as(self, row: type[R]) -> Query[R]:
        """This statement, its rows read into `row` (`fetch`)."""
        return Query(self.text, self.params, self.expanding, row=row)


@dataclass(frozen=True)
class Query(Sql, Generic[R]):
    """A report's statement and the record each of its rows becomes: a NamedTuple whose fields are columns of
    the statement, by name (in any order; a column no field names is not read; trailing fields with a default
    may have no column). A NamedTuple rather than a frozen dataclass: as immutable, and made from a row's tuple
    as cheaply as a dict (a frozen dataclass's __init__ costs an object.__setattr__ per field)."""

    row: type[R] = field(kw_only=True)


def bound(*parts: Sql, **more: object) -> Params:
    """The parameters of several parts of one statement, and `more`."""
    params: Params = {}
    for part in parts:
        params.update(part.params)
    params.update(more)
    return params


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
STAY_GROUPS = {"rep": "t.owner_id", "team": "t.team_id"}  # copied on the timeline rows
ROLLUP_GROUPS = {None: "''", "rep": "m.owner_id", "team": "m.team_id"}  # the monthly rollups' columns
WON_VALUE = "COALESCE(l.won_value, l.value)"
WON_CURRENCY = "COALESCE(l.won_currency, l.currency, '')"


@dataclass(frozen=True)
class Filters:
    """A report's filters: the caller's org, the period [from_ts, to_ts), a pipeline, a grouping, and for a
    rep caller their own id (only the figures credited to them)."""

    org_id: str
    from_ts: float | None = None
    to_ts: float | None = None
    pipeline_id: str | None = None
    group_by: GroupBy = None
    rep_id: str | None = None  # set when the caller is a rep: only their own leads
    now: datetime | None = None
    basis: str = "current"  # whose leads: BASES

    def group_sql(self, default: GroupBy = None) -> str:
        key = self.group_by or default
        return f"COALESCE({groups(self.basis)[key]}, '')" if key else "''"

    def credited(self, basis: str) -> Filters:
        """The same filters, crediting leads to their owner of `basis` (BASES)."""
        return replace(self, basis=basis)

    def lead_where(self, period_col: str | None, alias: str = "l") -> Sql:
        """Leads `alias` of the org, with `period_col` in the period, in the pipeline, and (a rep) credited to
        the caller."""
        params: Params = {"org": self.org_id}
        parts = [f"{alias}.org_id = :org"]
        if period_col is not None:
            if self.from_ts is not None:
                parts.append(f"{alias}.{period_col} >= :from_ts")
                params["from_ts"] = self.from_ts
            if self.to_ts is not None:
                parts.append(f"{alias}.{period_col} < :to_ts")
                params["to_ts"] = self.to_ts
            parts.append(f"{alias}.{period_col} IS NOT NULL")
        if self.pipeline_id is not None:
            parts.append(f"{alias}.pipeline_id = :pipeline")
            params["pipeline"] = self.pipeline_id
        if self.rep_id is not None:
            parts.append(f"{BASES[self.basis][0].replace('l.', alias + '.')} = :me")
            params["me"] = self.rep_id
        return Sql(" AND ".join(parts), params)

    def stay_where(self, period_col: str | None, *, own_only: bool = True) -> Sql:
        """Stays (stage rows) `t` of the org, with `period_col` in the period, of leads in the pipeline, and
        (a rep, with `own_only`) of the caller's own leads."""
        params: Params = {"org": self.org_id}
        parts = ["t.org_id = :org", "t.kind = 'stage'"]
        if period_col is not None:
            parts.append(f"t.{period_col} IS NOT NULL")
            if self.from_ts is not None:
                parts.append(f"t.{period_col} >= :from_ts")
                params["from_ts"] = self.from_ts
            if self.to_ts is not None:
                parts.append(f"t.{period_col} < :to_ts")
                params["to_ts"] = self.to_ts
        if self.pipeline_id is not None:
            parts.append("t.lead_pipeline_id = :pipeline")
            params["pipeline"] = self.pipeline_id
        if self.rep_id is not None and own_only:
            parts.append("t.owner_id = :me")
            params["me"] = self.rep_id
        return Sql(" AND ".join(parts), params)

    def rollup_where(self) -> Sql:
        """Rows of a monthly rollup `m` of the org, of the pipeline and (a rep) of the caller."""
        params: Params = {"org": self.org_id}
        parts = ["m.org_id = :org"]
        if self.pipeline_id is not None:
            parts.append("m.pipeline_id = :pipeline")
            params["pipeline"] = self.pipeline_id
        if self.rep_id is not None:
            parts.append("m.owner_id = :me")
            params["me"] = self.rep_id
        return Sql(" AND ".join(parts), params)

    def rollup_group(self, default: GroupBy = None) -> str:
        return ROLLUP_GROUPS[self.group_by or default]

    def day_where(self) -> Sql:
        """Daily counters `d` of the org on the UTC days from `from`'s day up to, not including, `to`'s day
        (a rep: their own)."""
        params: Params = {"org": self.org_id}
        parts = ["d.org_id = :org"]
        if self.from_ts is not None:
            parts.append("d.day >= :from_day")
            params["from_day"] = int(self.from_ts // DAY_S)
        if self.to_ts is not None:
            parts.append("d.day < :to_day")
            params["to_day"] = int(self.to_ts // DAY_S)
        if self.rep_id is not None:
            parts.append("d.rep_id = :me")
            params["me"] = self.rep_id
        return Sql(" AND ".join(parts), params)


def stays_from(f: Filters, period_col: str | None, *, default: GroupBy = None, own_only: bool = True,
               with_lead: bool = False) -> tuple[str, Sql]:
    """(group expression, FROM … WHERE …) over stays (stage rows) using the lead attributes copied on them;
    joins m_leads only for a group_by the timeline does not carry (or when `with_lead`)."""
    key = f.group_by or default
    join = with_lead or (key is not None and key not in STAY_GROUPS)
    group = "''" if key is None else f"COALESCE({STAY_GROUPS[key] if key in STAY_GROUPS else GROUPS[key]}, '')"
    where = f.stay_where(period_col, own_only=own_only)
    source = "m_timeline t"
    if join:
        source += " JOIN m_leads l ON l.org_id = t.org_id AND l.lead_id = t.lead_id"
    return group, Sql(f"FROM {source} WHERE {where.text}", where.params)


def per_stage(inner: str, aggregate: str, *, per_team: bool) -> str:
    """PostgreSQL: `aggregate` (a SELECT … FROM v …) over the ended stays `inner` selects (a SELECT … FROM
    m_timeline t WHERE …), run once per stage of m_stages, and with `per_team` once per team and stage (team =
    COALESCE(team_id, ''): the stays with no team join the '' group). Each run is one range of an index ordered
    by (team,) stage and period time (ix_m_timeline_team_stays / ix_m_timeline_cohort_stays), so nothing sorts
    the quarter's stays by group: only each group's own values are sorted, for its median or percentile.
    Columns out: team (with per_team), pipeline_id, stage_id, then the aggregate's. Binds :org."""
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


def stats_sql(inner: str, keys: list[str], dialect: Dialect = "sqlite", extra: str = "") -> str:
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


# ------------------------------------------------------------------ the monthly rollups (PostgreSQL)
Months = tuple[int | None, int | None]  # [first, end) month numbers, None: unbounded


def rollup_serves(dialect: Dialect, f: Filters) -> bool:
    """The monthly rollups (kept on PostgreSQL) carry owner, team and pipeline ('' for none): they answer these
    groups and filters."""
    return (dialect == "postgresql" and f.group_by in (None, "rep", "team") and f.pipeline_id != ""
            and f.rep_id != "")


def whole_month_period(from_ts: float | None, to_ts: float | None) -> Months | None:
    """[first, end) months when [from_ts, to_ts) is exactly whole months (None: unbounded), else None."""
    first, end = whole_months(from_ts, to_ts)
    if from_ts is not None and (first is None or month_start_ts(first) != from_ts):
        return None
    if to_ts is not None and (end is None or month_start_ts(end) != to_ts):
        return None
    return first, end


def duration_months(dialect: Dialect, f: Filters) -> Months | None:
    """The months of the rollups that make up the period exactly (PostgreSQL), else None."""
    if dialect != "postgresql" or f.pipeline_id == "" or f.rep_id == "":
        return None
    return whole_month_period(f.from_ts, f.to_ts)


def month_range(first: int | None, end: int | None, alias: str = "m") -> Sql:
    """The condition on `alias.month` for the months [first, end) (None: unbounded)."""
    params: Params = {}
    parts = ["TRUE"]
    if first is not None:
        parts.append(f"{alias}.month >= :first_month")
        params["first_month"] = first
    if end is not None:
        parts.append(f"{alias}.month < :end_month")
        params["end_month"] = end
    return Sql(" AND ".join(parts), params)


def edges(from_ts: float | None, to_ts: float | None, column: str) -> tuple[Sql, Sql] | None:
    """(condition on the months inside [from, to) for the rollup, condition on `column` for the rows of the
    partial months at the period's edges), or None when no whole month fits (then read the rows alone)."""
    first, end = whole_months(from_ts, to_ts)
    if first is not None and end is not None and first >= end:
        return None
    params: Params = {}
    edge_parts = []
    if first is not None:
        edge_parts.append(f"({column} >= :from_ts AND {column} < :first_month_ts)")
        params.update(from_ts=from_ts, first_month_ts=month_start_ts(first))
    if end is not None:
        edge_parts.append(f"({column} >= :end_month_ts AND {column} < :to_ts)")
        params.update(to_ts=to_ts, end_month_ts=month_start_ts(end))
    return month_range(first, end), Sql(f"({' OR '.join(edge_parts) or 'FALSE'})", params)


# ------------------------------------------------------------------ names
class RepName(NamedTuple):
    rep_id: str
    name: str | None


def rep_names(org_id: str, rep_ids: list[str]) -> Query[RepName]:
    return Sql("SELECT rep_id, name FROM m_reps WHERE org_id = :org AND rep_id IN :ids",
               {"org": org_id, "ids": rep_ids}, expanding=("ids",)).read_as(RepName)


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
