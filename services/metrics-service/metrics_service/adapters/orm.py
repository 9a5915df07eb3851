"""metrics-service's tables. Only this service reads or writes them.

Three layers:
- `event_log`: every consumed event, append-only, unique by event id (the source of truth here).
- read models (`m_*`): projections of the log. Each one is a commutative function of the SET of logged
  events (last-writer-wins by (subject_version, occurred_at, event_id), LEAST/GREATEST, counters keyed by
  event id, per-lead recomputation ordered by time), so arrival order and duplicates never change them,
  and `rebuild` recreates them from the log with the same content.
- service-owned data: quotas and frozen forecast snapshots.

Times that reports compute with are stored as epoch seconds (`*_ts`, double precision): durations are then a
plain subtraction on PostgreSQL and SQLite alike, and indexes on them serve the period filters.
"""
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from salesflow_shared.infra_tables import BigIntId, add_infrastructure_tables

metadata = sa.MetaData()
add_infrastructure_tables(metadata)

ORG = sa.String(100)
ID = sa.String(100)
MONEY = sa.Numeric(18, 2)
TS = sa.Float  # epoch seconds


def _org() -> sa.Column:
    return sa.Column("org_id", ORG, nullable=False)


event_log = sa.Table(
    "event_log", metadata,
    sa.Column("seq", BigIntId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    _org(),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("event_version", sa.Integer, nullable=False),
    sa.Column("producer", sa.String(100), nullable=False),
    sa.Column("subject_id", ID, nullable=False),
    sa.Column("subject_version", sa.Integer, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("correlation_id", sa.String(100), nullable=True),
    sa.Column("causation_id", sa.String(100), nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    # False until the projector has applied the event to the read models (revision 0003)
    sa.Column("projected", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_event_log_org_subject", "org_id", "subject_id"),
    sa.Index("ix_event_log_unprojected", "seq", postgresql_where=sa.text("NOT projected"),
             sqlite_where=sa.text("NOT projected")),
)

# One row per lead: its attributes (LWW per source), its outcome and the facts derived from its timeline.
HANDED_OVER = "outcome = 'won' AND owner_id <> COALESCE(credit_owner_id, '')"  # won, now owned by another rep
m_leads = sa.Table(
    "m_leads", metadata,
    _org(),
    sa.Column("lead_id", ID, nullable=False),
    # from LeadCreated / LeadUpdated (lead-service snapshot), last writer wins by (version, tiebreak)
    sa.Column("snap_ver", sa.Integer, nullable=False, server_default="0"),
    sa.Column("snap_tb", sa.String(80), nullable=False, server_default=""),
    sa.Column("is_created", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_ts", TS, nullable=True),
    sa.Column("product_line", sa.String(200), nullable=True),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("value", MONEY, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("expected_close_ts", TS, nullable=True),
    # from LeadRouted
    sa.Column("route_ver", sa.Integer, nullable=False, server_default="0"),
    sa.Column("route_tb", sa.String(80), nullable=False, server_default=""),
    sa.Column("routed_pipeline_id", ID, nullable=True),
    sa.Column("routed_territory_id", ID, nullable=True),
    # from LeadAssigned
    sa.Column("assign_ver", sa.Integer, nullable=False, server_default="0"),
    sa.Column("assign_tb", sa.String(80), nullable=False, server_default=""),
    sa.Column("owner_id", ID, nullable=True),
    sa.Column("team_id", ID, nullable=True),
    sa.Column("assigned_territory_id", ID, nullable=True),
    sa.Column("territory_id", ID, nullable=True),  # assigned territory, else routed territory
    # Credit (revision 0014), from the lead's assignment history (m_assignments): the owner, team and assigned
    # territory at the close (won, lost, disqualified) for a closed lead, the current ones for an open lead; and
    # the owner, team and territory at creation (the latest assignment at or before it, else the first one).
    sa.Column("credit_owner_id", ID, nullable=True),
    sa.Column("credit_team_id", ID, nullable=True),
    sa.Column("credit_territory_id", ID, nullable=True),
    sa.Column("first_owner_id", ID, nullable=True),
    sa.Column("first_team_id", ID, nullable=True),
    sa.Column("first_territory_id", ID, nullable=True),
    # derived from the lead's timeline (m_timeline), recomputed whenever one of its timeline rows arrives
    sa.Column("pipeline_id", ID, nullable=True),
    sa.Column("pipeline_entered_ts", TS, nullable=True),
    sa.Column("first_position", sa.Integer, nullable=True),
    sa.Column("max_position", sa.Integer, nullable=True),
    sa.Column("ask_entered_ts", TS, nullable=True),
    sa.Column("current_stage_id", ID, nullable=True),
    sa.Column("current_position", sa.Integer, nullable=True),
    sa.Column("current_stage_entered_ts", TS, nullable=True),
    sa.Column("current_win_probability", sa.Numeric(6, 4), nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False, server_default="open"),  # open, won, lost, disqualified
    sa.Column("closed_ts", TS, nullable=True),
    sa.Column("won_value", MONEY, nullable=True),
    sa.Column("won_currency", sa.String(3), nullable=True),
    sa.Column("reopen_count", sa.Integer, nullable=False, server_default="0"),
    # from ActivityLogged: first call, email or meeting logged by a person (not a sequence) who is the lead's
    # owner at creation (first_owner_id; revision 0014)
    sa.Column("first_owner_activity_ts", TS, nullable=True),
    # from the tasks: earliest due time of open required tasks, one of them flagged overdue (revision 0006)
    sa.Column("open_task_due_ts", TS, nullable=True),
    sa.Column("open_task_overdue", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.PrimaryKeyConstraint("org_id", "lead_id"),
    sa.Index("ix_m_leads_owner", "org_id", "owner_id"),
    sa.Index("ix_m_leads_open", "org_id", "outcome", "expected_close_ts"),
    # Covering indexes (revision 0007): each period filter with the columns its reports read, so a quarter of
    # leads is an index-only scan instead of a heap visit per lead.
    sa.Index("ix_m_leads_created_cover", "org_id", "created_ts", postgresql_include=[
        "first_owner_id", "first_team_id", "pipeline_id", "first_owner_activity_ts", "first_position", "max_position",
        "ask_entered_ts", "outcome", "product_line", "source", "territory_id"]),
    sa.Index("ix_m_leads_entered_cover", "org_id", "pipeline_entered_ts",
             postgresql_include=["pipeline_id", "max_position", "first_owner_id", "first_team_id"]),
    sa.Index("ix_m_leads_closed_cover", "org_id", "closed_ts", postgresql_include=[
        "outcome", "won_value", "value", "won_currency", "currency", "created_ts", "ask_entered_ts", "credit_owner_id",
        "credit_team_id", "pipeline_id", "owner_id"]),
    # won leads handed over (current owner is not the one credited with the win): the hand-overs report
    # (revision 0016; the condition is the report's own, so the planner can prove the index serves it)
    sa.Index("ix_m_leads_handed_over", "org_id", "closed_ts", postgresql_include=[
        "owner_id", "team_id", "credit_owner_id", "won_value", "value", "won_currency", "currency", "pipeline_id"],
             postgresql_where=sa.text(HANDED_OVER), sqlite_where=sa.text(HANDED_OVER)),
    # open leads by team and current stage, oldest entry first: the stalled-deals lookup per team and stage
    sa.Index("ix_m_leads_open_stage", "org_id", "team_id", "pipeline_id", "current_stage_id",
             "current_stage_entered_ts", postgresql_include=["lead_id", "owner_id"],
             postgresql_where=sa.text("outcome = 'open'"), sqlite_where=sa.text("outcome = 'open'")),
    # open leads: adoption's coverage and the forecast's open pipeline
    sa.Index("ix_m_leads_open_cover", "org_id", "expected_close_ts", postgresql_include=[
        "pipeline_entered_ts", "value", "currency", "current_win_probability", "owner_id", "team_id",
        "credit_owner_id", "credit_team_id", "pipeline_id",
        "is_created", "open_task_overdue", "open_task_due_ts"],
             postgresql_where=sa.text("outcome = 'open'"), sqlite_where=sa.text("outcome = 'open'")),
)

ENDED_STAY = sa.text("kind = 'stage' AND next_ts IS NOT NULL")

# Boundaries of a lead's life in a pipeline: stage entries, won, lost, disqualified, reopened. A stage row
# is a "stay"; it ends at the lead's next boundary (next_ts, next_kind, next_position), recomputed per lead.
m_timeline = sa.Table(
    "m_timeline", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    _org(),
    sa.Column("lead_id", ID, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # stage, won, lost, disqualified, reopened
    sa.Column("at_ts", TS, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),  # tie order at equal times: reopened, stage, outcomes
    sa.Column("pipeline_id", ID, nullable=True),
    sa.Column("stage_id", ID, nullable=True),
    sa.Column("position", sa.Integer, nullable=True),
    sa.Column("is_ask", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("win_probability", sa.Numeric(6, 4), nullable=True),
    sa.Column("reason", sa.String(40), nullable=True),
    sa.Column("value", MONEY, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("next_ts", TS, nullable=True),
    sa.Column("next_kind", sa.String(20), nullable=True),
    sa.Column("next_position", sa.Integer, nullable=True),
    sa.Column("next_reason", sa.String(40), nullable=True),
    # the owner and team credited with the row (revision 0014): for an ended stay the owner at its end (the
    # exit), for an open stay the current owner, for an outcome the owner at that moment; and copies of the
    # lead's current pipeline and first stage entry (revision 0005)
    sa.Column("owner_id", ID, nullable=True),
    sa.Column("team_id", ID, nullable=True),
    sa.Column("lead_pipeline_id", ID, nullable=True),
    sa.Column("cohort_ts", TS, nullable=True),
    # the visit had required tasks (created during it, revision 0015) and all are completed (revision 0006)
    sa.Column("tasks_done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_m_timeline_lead", "org_id", "lead_id"),
    sa.Index("ix_m_timeline_stage", "org_id", "pipeline_id", "stage_id", "at_ts"),
    sa.Index("ix_m_timeline_entered", "org_id", "at_ts"),  # revision 0004
    sa.Index("ix_m_timeline_cohort", "org_id", "cohort_ts"),  # revision 0005
    # Ended stays (revision 0007), each index holding what one family of reports reads, so they are
    # index-only scans: per team and stage by entry time (coaching, stalled deals), per stage by the lead's
    # pipeline entry (funnel), by exit time (compliance).
    sa.Index("ix_m_timeline_team_stays", "org_id", "team_id", "pipeline_id", "stage_id", "at_ts",
             postgresql_include=["next_ts", "owner_id", "position", "next_kind", "next_position", "lead_pipeline_id"],
             postgresql_where=ENDED_STAY, sqlite_where=ENDED_STAY),
    sa.Index("ix_m_timeline_cohort_stays", "org_id", "pipeline_id", "stage_id", "cohort_ts",
             postgresql_include=["at_ts", "next_ts", "next_kind", "lead_pipeline_id", "lead_id", "owner_id", "team_id"],
             postgresql_where=ENDED_STAY, sqlite_where=ENDED_STAY),
    sa.Index("ix_m_timeline_exits", "org_id", "next_ts", postgresql_include=[
        "owner_id", "team_id", "next_kind", "next_reason", "tasks_done", "lead_pipeline_id"],
             postgresql_where=ENDED_STAY, sqlite_where=ENDED_STAY),
)

# Stages as seen in StageAdvanced (the latest entry's description wins).
m_stages = sa.Table(
    "m_stages", metadata,
    _org(),
    sa.Column("pipeline_id", ID, nullable=False),
    sa.Column("stage_id", ID, nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("is_ask", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("win_probability", sa.Numeric(6, 4), nullable=True),
    sa.Column("tb", sa.String(80), nullable=False, server_default=""),
    sa.PrimaryKeyConstraint("org_id", "pipeline_id", "stage_id"),
)

m_reps = sa.Table(
    "m_reps", metadata,
    _org(),
    sa.Column("rep_id", ID, nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("team_id", ID, nullable=True),
    sa.Column("tb", sa.String(80), nullable=False, server_default=""),
    sa.PrimaryKeyConstraint("org_id", "rep_id"),
)

m_activities = sa.Table(
    "m_activities", metadata,
    _org(),
    sa.Column("activity_id", ID, nullable=False),
    sa.Column("lead_id", ID, nullable=False),
    sa.Column("rep_id", ID, nullable=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("occurred_ts", TS, nullable=False),
    sa.Column("duration_seconds", sa.Integer, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "activity_id"),
    sa.Index("ix_m_activities_lead", "org_id", "lead_id"),
)

# Per rep and UTC day counters; each event adds to exactly one row, once (the log is unique by event id).
COUNTERS = ("calls", "talk_seconds", "emails_logged", "emails_sequence", "meetings", "demos", "proposals",
            "notes", "records_entered", "records_updated")
m_rep_daily = sa.Table(
    "m_rep_daily", metadata,
    _org(),
    sa.Column("rep_id", ID, nullable=False),
    sa.Column("day", sa.Integer, nullable=False),  # days since 1970-01-01 (UTC)
    *[sa.Column(c, sa.BigInteger, nullable=False, server_default="0") for c in COUNTERS],
    sa.PrimaryKeyConstraint("org_id", "rep_id", "day"),
    # a period's days of every rep (activities, leaderboard, active reps; revision 0007); no INCLUDE, so the
    # counter increments stay heap-only updates
    sa.Index("ix_m_rep_daily_day", "org_id", "day"),
)

# Monthly rollups (revision 0008) of facts the reports would otherwise count over a period's leads or stays.
# Keys are UTC months (periods.month_number) and the lead's owner, team and pipeline ('' when unknown); the
# projector adds each batch's difference (the touched leads' contribution after minus before) and removes
# rows that fall to zero, so they always equal a GROUP BY over m_leads / m_timeline (and a rebuild).
ROLLUP_KEYS = ("month", "owner_id", "team_id", "pipeline_id")


def _rollup_keys() -> list[sa.Column]:
    return [_org(), sa.Column("month", sa.Integer, nullable=False),
            *[sa.Column(c, ID, nullable=False) for c in ROLLUP_KEYS[1:]]]


# closed leads per month of closed_ts and outcome: count and Σ COALESCE(won_value, value, 0)
m_closed_months = sa.Table(
    "m_closed_months", metadata,
    *_rollup_keys(),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("leads", sa.Integer, nullable=False),
    sa.Column("value", MONEY, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS, "outcome"),
)

# stage exits per month of next_ts (stays ended by a stage entry, win, loss or disqualification), pipeline =
# the lead's current pipeline (lead_pipeline_id): all of them and the compliant ones (adoption)
m_exit_months = sa.Table(
    "m_exit_months", metadata,
    *_rollup_keys(),
    sa.Column("exits", sa.Integer, nullable=False),
    sa.Column("compliant", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS),
)

# Ended stays' durations (next_ts − at_ts) in ascending order, so a month's medians and percentiles read one
# row per group instead of every stay (revision 0009). Stored packed (revision 0013): the big-endian IEEE
# doubles one after another (PostgreSQL's float8send of each), which the reports hand to numpy as they come,
# where a float8[] costs PostgreSQL an array_send per row and the driver a Python float per element.
DURATIONS = sa.LargeBinary

# per UTC month of stage entry (at_ts), lead owner, team and pipeline, and the stay's stage: count, converted
# (left by a higher stage or a win) and the durations (coaching, stalled deals)
m_stay_months = sa.Table(
    "m_stay_months", metadata,
    *_rollup_keys(),
    sa.Column("stage_pipeline_id", ID, nullable=False),
    sa.Column("stage_id", ID, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("stays", sa.Integer, nullable=False),
    sa.Column("converted", sa.Integer, nullable=False),
    sa.Column("durations", DURATIONS, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS, "stage_pipeline_id", "stage_id", "position"),
)

# per UTC month of the lead's pipeline entry (cohort_ts), owner, team and pipeline, and stage of that
# pipeline: the durations and the leads lost or disqualified while in it (funnel)
m_cohort_months = sa.Table(
    "m_cohort_months", metadata,
    *_rollup_keys(),
    sa.Column("stage_id", ID, nullable=False),
    sa.Column("stays", sa.Integer, nullable=False),
    sa.Column("dropped_leads", sa.Integer, nullable=False),
    sa.Column("durations", DURATIONS, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS, "stage_id"),
)

# leads per UTC month of creation, owner, team and pipeline (owner '' for the leads nobody owned at creation,
# since revision 0018): count and the response durations (first owner activity − creation) of those that have
# one (response time, revision 0010; production's leads generated)
m_created_months = sa.Table(
    "m_created_months", metadata,
    *_rollup_keys(),
    sa.Column("leads", sa.Integer, nullable=False),
    sa.Column("durations", DURATIONS, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS),
)

# leads per UTC month of pipeline entry, owner, team, pipeline and highest position reached (funnel, 0010)
m_reach_months = sa.Table(
    "m_reach_months", metadata,
    *_rollup_keys(),
    sa.Column("max_position", sa.Integer, nullable=False),
    sa.Column("leads", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS, "max_position"),
)

# won leads per UTC month of the win, owner, team, pipeline and currency: count and the won values (LeadWon's,
# else the lead's) as a sorted array, for the exact median deal size (revision 0011)
m_won_months = sa.Table(
    "m_won_months", metadata,
    *_rollup_keys(),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("deals", sa.Integer, nullable=False),
    sa.Column("won_values", sa.JSON().with_variant(postgresql.ARRAY(MONEY), "postgresql"), nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS, "currency"),
)

# leads won or lost per UTC month of the close, the owner and team credited with it (at the close), pipeline and
# outcome: count, the sales cycles (closed_ts − created_ts, wins with a creation time) and the ask-to-decision
# durations (closed_ts − ask_entered_ts, leads that entered an ask stage), packed like DURATIONS (sales cycle,
# revision 0017)
m_decided_months = sa.Table(
    "m_decided_months", metadata,
    *_rollup_keys(),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("leads", sa.Integer, nullable=False),
    sa.Column("cycle_durations", DURATIONS, nullable=False),
    sa.Column("ask_durations", DURATIONS, nullable=False),
    sa.PrimaryKeyConstraint("org_id", *ROLLUP_KEYS, "outcome"),
)

# Every assignment of a lead (revision 0014): who owned it when. "Owner at T" = the newest assignment (by
# version, then occurred_at|event id) among those that occurred at or before T, else the lead's first one.
m_assignments = sa.Table(
    "m_assignments", metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    _org(),
    sa.Column("lead_id", ID, nullable=False),
    sa.Column("at_ts", TS, nullable=False),
    sa.Column("ver", sa.Integer, nullable=False),
    sa.Column("tb", sa.String(80), nullable=False),
    sa.Column("owner_id", ID, nullable=True),
    sa.Column("team_id", ID, nullable=True),
    sa.Column("territory_id", ID, nullable=True),
    sa.Column("trigger", sa.String(40), nullable=True),
    sa.Index("ix_m_assignments_lead", "org_id", "lead_id"),
)

m_tasks = sa.Table(
    "m_tasks", metadata,
    _org(),
    sa.Column("task_id", ID, nullable=False),
    sa.Column("lead_id", ID, nullable=True),
    sa.Column("stage_id", ID, nullable=True),
    sa.Column("required", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("due_ts", TS, nullable=True),
    # precedence completed > skipped > open, whatever order the events arrive in
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("overdue", sa.Boolean, nullable=False, server_default=sa.false()),
    # when it was created (TaskCreated): a stay's tasks are those created during that visit (revision 0015)
    sa.Column("created_ts", TS, nullable=True),
    sa.PrimaryKeyConstraint("org_id", "task_id"),
    sa.Index("ix_m_tasks_lead", "org_id", "lead_id"),
)

quotas = sa.Table(
    "quotas", metadata,
    sa.Column("quota_id", sa.String(36), primary_key=True),
    _org(),
    sa.Column("scope", sa.String(10), nullable=False),  # rep, team
    sa.Column("scope_id", ID, nullable=False),
    sa.Column("period", sa.String(10), nullable=False),  # month, quarter, year
    sa.Column("period_start", sa.Date, nullable=False),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("org_id", "scope", "scope_id", "period", "period_start", name="uq_quotas_target"),
)

forecast_snapshots = sa.Table(
    "forecast_snapshots", metadata,
    sa.Column("snapshot_id", sa.String(36), primary_key=True),
    _org(),
    sa.Column("period", sa.String(10), nullable=False),
    sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("scope", sa.String(10), nullable=False),
    sa.Column("scope_id", ID, nullable=False, server_default=""),  # "" for the org
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("won_so_far", MONEY, nullable=False),
    sa.Column("weighted_by_stage", MONEY, nullable=False),
    sa.Column("weighted_by_history", MONEY, nullable=False),
    sa.Column("best_case", MONEY, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("org_id", "period", "period_start", "scope", "scope_id", name="uq_forecast_snapshot"),
)

# The org's reporting currency (revision 0015): every report's money figures are in it (USD until an admin
# sets one). Service-owned, kept by a rebuild.
org_currency = sa.Table(
    "org_currency", metadata,
    sa.Column("org_id", ORG, primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Dated exchange rates an admin set (revision 0015): 1 base = rate quote, from valid_from until the pair's next.
exchange_rates = sa.Table(
    "exchange_rates", metadata,
    _org(),
    sa.Column("base_currency", sa.String(3), nullable=False),
    sa.Column("quote_currency", sa.String(3), nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("rate", sa.Numeric(24, 10), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("org_id", "base_currency", "quote_currency", "valid_from"),
)

READ_MODELS = (m_leads, m_timeline, m_stages, m_reps, m_activities, m_rep_daily, m_tasks, m_assignments,
               m_closed_months, m_exit_months, m_stay_months, m_cohort_months, m_created_months, m_reach_months,
               m_won_months, m_decided_months)
OWN_TABLES = (event_log, *READ_MODELS, quotas, forecast_snapshots, org_currency, exchange_rates)


def one_of(column: sa.ColumnElement[Any], values: Sequence[Any], dialect: str) -> sa.ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL `column = ANY(array)`: one parameter, so the statement is compiled
    once and cached, where an IN list renders a cast parameter per value at every execution (the projector
    sends a batch's lead ids, some hundreds, several times per batch)."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


# Statements of the projector's writes, built once per dialect, target and columns: a batch executes them with
# its rows as parameters, so each is compiled once and its cache key is not computed again by a traversal of a
# new statement (with its CASE expressions) at every batch.
_BUILT: dict[tuple[Any, ...], Any] = {}


def built(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The statement `build()` made the first time `key` was asked for."""
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build()
    return statement


def among(column: sa.ColumnElement[Any], name: str, dialect: str) -> sa.ColumnElement[bool]:
    """`one_of` with the values bound later, as the parameter `name` (for a statement built once)."""
    if dialect == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(sa.bindparam(name, expanding=True))


def tagged_union(columns: dict[str, Any], branches: dict[str, tuple[Any, ...]]) -> sa.CompoundSelect:
    """One UNION ALL of selects of different tables, so that one round trip reads them all: `columns` maps each
    output column to its type, `branches` each source's name to (its columns by output name, then its WHERE
    conditions); a branch's missing columns are NULLs of the column's type, and each row's `source` column
    names its branch."""
    selects = []
    for source, (present, *where) in branches.items():
        selected: list[Any] = [sa.literal(source).label("source")]
        selected.extend((present[name] if name in present else sa.cast(sa.null(), kind)).label(name)
                        for name, kind in columns.items())
        selects.append(sa.select(*selected).where(*where))
    return sa.union_all(*selects)
