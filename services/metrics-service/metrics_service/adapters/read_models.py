"""The read models (m_*) and the event log, as the projector reads and writes them: the log's rows (`record`),
a batch's changes (`Batch`) written with set-based upserts, and the per-lead facts recomputed from the stored rows.
Pure collection of a batch and the timeline rules are service_layer/projections.py's and domain/timeline.py's."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.events import Envelope
from salesflow_shared.inbox import dialect_insert, dialect_name, per_dialect

from ..domain.periods import day_number
from .orm import (
    READ_MODELS,
    among,
    built,
    event_log,
    m_activities,
    m_assignments,
    m_leads,
    m_rep_daily,
    m_reps,
    m_stages,
    m_tasks,
    m_timeline,
    tagged_union,
)

FIRST_RESPONSE_KINDS = ("call", "email", "meeting")
AUTOMATED_SOURCES = ("sequence",)  # an activity a machine logged for the rep: never a human response
PERSONAL_KEYS = ("contact", "company", "postcode", "custom_fields", "utm")
CHUNK = 400  # rows per multi-row statement (keeps bind parameters under the drivers' limits)
PROJECTOR_LOCK = "metrics-projector"
Row = dict[str, Any]  # a read-model row to write, by column


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# Built once (every delivered batch appends with it); RETURNING tells the events logged for the first time.
_RECORD_MANY = per_dialect(lambda insert: insert(event_log).on_conflict_do_nothing(
    index_elements=["event_id"]).returning(event_log.c.event_id))


def _log_rows(envelopes: list[Envelope], recorded_at: datetime) -> list[dict[str, Any]]:
    return [dict(event_id=str(e.id), org_id=e.org_id, event_type=e.type, event_version=e.version,
                 producer=e.producer, subject_id=e.subject_id, subject_version=e.subject_version,
                 occurred_at=e.occurred_at, correlation_id=e.correlation_id, causation_id=e.causation_id,
                 data=e.data, recorded_at=recorded_at) for e in envelopes]


async def record_many(session: AsyncSession, envelopes: list[Envelope], recorded_at: datetime) -> set[str]:
    """`record` for a batch of deliveries, in one statement; returns the ids of the events logged now (the
    others were there already: redeliveries)."""
    if not envelopes:
        return set()
    # rows as parameters (compiled once, cached), not inlined with .values([...]) (compiled for every batch)
    result = await session.execute(_RECORD_MANY[dialect_name(session)], [
        {**row, "projected": False} for row in _log_rows(envelopes, recorded_at)])
    return set(result.scalars().all())


def _record_taking_turn(insert: Any, turn: sa.ColumnElement[Any]) -> Any:
    """`_RECORD_MANY` that also tries to become the projector of the transaction (`turn`) and marks each row
    projected when it is (so the caller applies it now)."""
    return insert(event_log).values(projected=turn).on_conflict_do_nothing(index_elements=["event_id"]).returning(
        event_log.c.event_id, event_log.c.projected)


async def record_taking_turn(session: AsyncSession, envelopes: list[Envelope], recorded_at: datetime
                             ) -> dict[str, bool]:
    """`record_many`, logging the events as projected when this transaction becomes the projector (nothing
    else projecting now), in the same statement: {id of an event logged now: whether the caller must apply it
    in this transaction (True), or left it to the projector worker (False)}."""
    if not envelopes:
        return {}
    result = await session.execute(_RECORD_TAKING_TURN[dialect_name(session)], _log_rows(envelopes, recorded_at))
    return {event_id: bool(projected) for event_id, projected in result.all()}


# ------------------------------------------------------------------ the projector's turn
@dataclass(frozen=True)
class Logged:
    """A logged event waiting to be applied: its place in the log and the event."""

    seq: int
    event_id: str
    envelope: Envelope


_LOGGED = (event_log.c.seq, event_log.c.event_id, event_log.c.org_id, event_log.c.event_type,
           event_log.c.event_version, event_log.c.producer, event_log.c.subject_id, event_log.c.subject_version,
           event_log.c.occurred_at, event_log.c.data)
# On PostgreSQL the projector's turn is a transaction-level advisory lock, tried before anything is read (a
# one-time filter of the claim: another projector busy, nothing is claimed).
_TURN = sa.func.pg_try_advisory_xact_lock(sa.func.hashtextextended(sa.literal(PROJECTOR_LOCK), 0))
_PROJECTOR_TURN = sa.select(_TURN).scalar_subquery()


def _claim(dialect: str, batch_size: Any, org_id: str | None = None,
           after_event_id: str | None = None) -> sa.Update:
    pending = sa.select(event_log.c.seq).where(sa.not_(event_log.c.projected))
    if org_id is not None:
        pending = pending.where(event_log.c.org_id == org_id)
    if after_event_id is not None:
        pending = pending.where(event_log.c.event_id > after_event_id).order_by(event_log.c.event_id)
    else:
        pending = pending.order_by(event_log.c.seq)
    claim = sa.update(event_log).where(event_log.c.seq.in_(pending.limit(batch_size)))
    if dialect == "postgresql":
        claim = claim.where(_PROJECTOR_TURN)
    return claim.values(projected=True).returning(*_LOGGED)


# Built once: the worker's claim of the next events in log order (every tick).
_CLAIM_NEXT = {dialect: _claim(dialect, sa.bindparam("batch_size", type_=sa.Integer))
               for dialect in ("postgresql", "sqlite")}
# Built once: every delivered batch logs with it (when the projector runs in this process).
# On SQLite the insert holds the database's write lock (see `claim_pending`): the turn is always this one's.
_RECORD_TAKING_TURN = {"postgresql": _record_taking_turn(postgresql.insert, _PROJECTOR_TURN),
                       "sqlite": _record_taking_turn(sqlite.insert, sa.true())}
_TAKE_TURN = sa.select(_TURN)


async def take_projector_turn(session: AsyncSession) -> bool:
    """Try to become the one projector of this transaction (PostgreSQL: the advisory lock of `_claim`, held
    until the transaction ends; SQLite: the write lock of the claim that follows, always this one's)."""
    if _dialect(session) != "postgresql":
        return True
    return bool((await session.execute(_TAKE_TURN)).scalar_one())


async def claim_pending(session: AsyncSession, batch_size: int, *, org_id: str | None = None,
                        after_event_id: str | None = None) -> list[Logged]:
    """Become the one projector of this transaction and take up to `batch_size` unprojected events (of one org,
    or all), in log order, or in event-id order after `after_event_id` when it is given: marked projected and
    returned by one statement (the caller applies them in the same transaction).

    On PostgreSQL the turn is a transaction-level advisory lock (another projector busy: nothing is taken). On
    SQLite (the embedded mode, where the worker and a rebuild or `project_all` can overlap) the claim is a
    write, so it holds the database's write lock from before it reads what is pending: a second projector
    waits and then sees the first one's rows as projected."""
    dialect = "postgresql" if _dialect(session) == "postgresql" else "sqlite"
    if org_id is None and after_event_id is None:
        result = await session.execute(_CLAIM_NEXT[dialect], {"batch_size": batch_size})
    else:
        result = await session.execute(_claim(dialect, batch_size, org_id, after_event_id))
    rows = sorted(result.all(), key=(lambda r: r.seq) if after_event_id is None else (lambda r: r.event_id))
    return [Logged(r.seq, r.event_id, _envelope(r)) for r in rows]


def _envelope(row: Any) -> Envelope:
    return Envelope(id=row.event_id, type=row.event_type, version=row.event_version, org_id=row.org_id,
                    occurred_at=row.occurred_at, producer=row.producer, subject_id=row.subject_id,
                    subject_version=row.subject_version, data=row.data)


async def clear(session: AsyncSession, dialect: str, org_id: str | None) -> None:
    """Empty the read models (of one org, or all) and mark the log unprojected, for a rebuild; on PostgreSQL
    after a running batch, keeping the projector out until the caller commits."""
    if dialect == "postgresql":
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                              {"k": PROJECTOR_LOCK})
    for table in READ_MODELS:
        stmt = sa.delete(table)
        await session.execute(stmt if org_id is None else stmt.where(table.c.org_id == org_id))
    reset = sa.update(event_log).values(projected=False)
    await session.execute(reset if org_id is None else reset.where(event_log.c.org_id == org_id))


async def erased_among(session: AsyncSession, org_id: str, lead_ids: list[str]) -> set[str]:
    """The leads among these whose LeadErased is logged."""
    found: set[str] = set()
    for i in range(0, len(lead_ids), CHUNK):
        found.update((await session.execute(_ERASED_AMONG[dialect_name(session)], {
            "org_id": org_id, "lead_ids": lead_ids[i:i + CHUNK]})).scalars())
    return found


# Built once: a batch with snapshots or activities asks it.
_ERASED_AMONG = {dialect: sa.select(event_log.c.subject_id).where(
    event_log.c.org_id == sa.bindparam("org_id"), event_log.c.event_type == "LeadErased",
    among(event_log.c.subject_id, "lead_ids", dialect)) for dialect in ("postgresql", "sqlite")}


# ------------------------------------------------------------------ what a batch changes
@dataclass
class Batch:
    """What one batch of events changes, reduced so that each target row appears once."""

    snapshots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    routes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    assignments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    assignment_history: list[dict[str, Any]] = field(default_factory=list)
    reps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    stages: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    activities: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tasks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    counters: dict[tuple[str, str, int], dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    erased: list[tuple[str, str]] = field(default_factory=list)
    recompute: set[tuple[str, str]] = field(default_factory=set)
    first_activity: set[tuple[str, str]] = field(default_factory=set)

    def count(self, org: str, rep: str | None, ts: float, **counters: int) -> None:
        if rep:
            bucket = self.counters[(org, rep, day_number(ts))]
            for name, value in counters.items():
                bucket[name] = bucket.get(name, 0) + value


# ------------------------------------------------------------------ writing a batch
def _chunks(rows: Sequence[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), CHUNK):
        yield list(rows[i:i + CHUNK])


def _newer(table: sa.Table, ver: str | None, tb: str, x: Any) -> sa.ColumnElement[bool]:
    """True when the incoming row beats the stored one on (version, tiebreak)."""
    if ver is None:
        newer: sa.ColumnElement[bool] = x[tb] > table.c[tb]
        return newer
    return sa.or_(x[ver] > table.c[ver], sa.and_(x[ver] == table.c[ver], x[tb] > table.c[tb]))


async def _upsert(session: AsyncSession, name: str, table: sa.Table, keys: list[str],
                  rows: Sequence[dict[str, Any]], set_for: Callable[[Any], dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET set_for(excluded), executed for many rows (one statement,
    built once under `name` for these columns; SQLAlchemy sends the rows as multi-row VALUES pages)."""
    if not rows:
        return

    def build() -> Any:
        stmt = dialect_insert(session)(table)
        return stmt.on_conflict_do_update(index_elements=keys, set_=set_for(stmt.excluded))
    stmt = built((_dialect(session), name, tuple(rows[0])), build)
    for chunk in _chunks(rows):
        await session.execute(stmt, chunk)


async def _upsert_lww(session: AsyncSession, name: str, table: sa.Table, keys: list[str],
                      rows: Sequence[dict[str, Any]], ver: str | None, tb: str, extra: Any = None) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]

    def set_for(x: Any) -> dict[str, Any]:
        newer = _newer(table, ver, tb, x)
        out = {c: sa.case((newer, x[c]), else_=table.c[c]) for c in columns}
        if extra is not None:
            out.update(extra(x, newer))
        return out
    await _upsert(session, name, table, keys, rows, set_for)


def _territory(x: Any, newer: Any, *, from_assignment: bool) -> dict[str, Any]:
    t = m_leads.c
    assigned = sa.case((newer, x.assigned_territory_id), else_=t.assigned_territory_id) if from_assignment \
        else t.assigned_territory_id
    routed = t.routed_territory_id if from_assignment \
        else sa.case((newer, x.routed_territory_id), else_=t.routed_territory_id)
    return {"territory_id": sa.func.coalesce(assigned, routed)}


async def write_sources(session: AsyncSession, b: Batch) -> None:
    """The lead snapshots, routes and assignments (last writer wins), reps and stages, timeline rows and the
    assignment history of the batch."""
    lead_keys = ["org_id", "lead_id"]
    await _upsert_lww(session, "snapshots", m_leads, lead_keys, list(b.snapshots.values()), "snap_ver", "snap_tb",
                      lambda x, newer: {
                          "is_created": sa.or_(m_leads.c.is_created, x.is_created),
                          # LeadCreated's creation time is authoritative; an update only fills a missing one
                          "created_ts": sa.case((x.is_created, x.created_ts),
                                                else_=sa.func.coalesce(m_leads.c.created_ts, x.created_ts))})
    await _upsert_lww(session, "routes", m_leads, lead_keys, list(b.routes.values()), "route_ver", "route_tb",
                      lambda x, newer: _territory(x, newer, from_assignment=False))
    await _upsert_lww(session, "assignments", m_leads, lead_keys, list(b.assignments.values()), "assign_ver",
                      "assign_tb",
                      lambda x, newer: _territory(x, newer, from_assignment=True))
    await _upsert_lww(session, "reps", m_reps, ["org_id", "rep_id"], list(b.reps.values()), None, "tb")
    await _upsert_lww(session, "stages", m_stages, ["org_id", "pipeline_id", "stage_id"], list(b.stages.values()),
                      None, "tb")
    for chunk in _chunks(b.timeline):
        await session.execute(_INSERT_TIMELINE[dialect_name(session)], chunk)
    for chunk in _chunks(b.assignment_history):
        await session.execute(_INSERT_HISTORY[dialect_name(session)], chunk)


_INSERT_TIMELINE = per_dialect(lambda insert: insert(m_timeline).on_conflict_do_nothing(index_elements=["event_id"]))
_INSERT_HISTORY = per_dialect(lambda insert: insert(m_assignments).on_conflict_do_nothing(
    index_elements=["event_id"]))
_INSERT_ACTIVITIES = per_dialect(lambda insert: insert(m_activities).on_conflict_do_nothing(
    index_elements=["org_id", "activity_id"]).returning(m_activities.c.org_id, m_activities.c.activity_id))


async def insert_activities(session: AsyncSession, rows: list[Row]) -> set[tuple[str, str]]:
    """Insert the activities not stored yet; returns the (org, activity id) of those inserted."""
    inserted: set[tuple[str, str]] = set()
    for chunk in _chunks(rows):
        inserted.update((r.org_id, r.activity_id)
                        for r in await session.execute(_INSERT_ACTIVITIES[dialect_name(session)], chunk))
    return inserted


async def write_tasks_and_counters(session: AsyncSession, b: Batch) -> None:
    """The batch's task facts (merged with the stored ones by precedence) and its daily counters (added)."""
    t = m_tasks.c

    def task_set(x: Any) -> dict[str, Any]:
        return {"lead_id": sa.func.coalesce(t.lead_id, x.lead_id), "stage_id": sa.func.coalesce(t.stage_id, x.stage_id),
                "required": sa.or_(t.required, x.required), "due_ts": sa.func.coalesce(x.due_ts, t.due_ts),
                "status": sa.case((sa.or_(t.status == "completed", x.status == "completed"), "completed"),
                                  (sa.or_(t.status == "skipped", x.status == "skipped"), "skipped"), else_="open"),
                "overdue": sa.or_(t.overdue, x.overdue),
                "created_ts": sa.case((t.created_ts.is_(None), x.created_ts), (x.created_ts.is_(None), t.created_ts),
                                      (x.created_ts < t.created_ts, x.created_ts), else_=t.created_ts)}
    await _upsert(session, "tasks", m_tasks, ["org_id", "task_id"], list(b.tasks.values()), task_set)
    counters = [{"org_id": org, "rep_id": rep, "day": day, **{c: values.get(c, 0) for c in _COUNTERS}}
                for (org, rep, day), values in b.counters.items()]
    await _upsert(session, "counters", m_rep_daily, ["org_id", "rep_id", "day"], counters,
                  lambda x: {c: m_rep_daily.c[c] + x[c] for c in _COUNTERS})


_COUNTERS = ("calls", "talk_seconds", "emails_logged", "emails_sequence", "meetings", "demos", "proposals", "notes",
             "records_entered", "records_updated")


async def scrub(session: AsyncSession, org_id: str, lead_id: str) -> None:
    """Remove personal data from this lead's logged snapshots and its activities' subjects (the read models
    hold none)."""
    rows = (await session.execute(sa.select(event_log.c.seq, event_log.c.data).where(
        event_log.c.org_id == org_id, event_log.c.subject_id == lead_id,
        event_log.c.event_type.in_(("LeadCreated", "LeadUpdated"))))).all()
    for seq, payload in rows:
        lead = {k: v for k, v in (payload.get("lead") or {}).items() if k not in PERSONAL_KEYS}
        await session.execute(sa.update(event_log).where(event_log.c.seq == seq).values(data={**payload, "lead": lead}))
    # an ActivityLogged's subject is the activity's id; its subject line is free text about the person
    activity_ids = sa.select(m_activities.c.activity_id).where(m_activities.c.org_id == org_id,
                                                               m_activities.c.lead_id == lead_id)
    rows = (await session.execute(sa.select(event_log.c.seq, event_log.c.data).where(
        event_log.c.org_id == org_id, event_log.c.event_type == "ActivityLogged",
        event_log.c.subject_id.in_(activity_ids)))).all()
    for seq, payload in rows:
        if payload.get("subject") is not None:
            await session.execute(sa.update(event_log).where(event_log.c.seq == seq).values(
                data={**payload, "subject": None}))


def by_org(leads: set[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for org, lead_id in sorted(leads):
        out[org].append(lead_id)
    return out


def _first_owner_activity_ts() -> sa.ScalarSelect[Any]:
    """first_owner_activity_ts = the earliest call, email or meeting on the lead that its owner at creation
    logged (a sequence's automated email is not a response)."""
    a = m_activities
    return (sa.select(sa.func.min(a.c.occurred_ts))
            .where(a.c.org_id == m_leads.c.org_id, a.c.lead_id == m_leads.c.lead_id,
                   a.c.rep_id == m_leads.c.first_owner_id, a.c.kind.in_(FIRST_RESPONSE_KINDS),
                   a.c.source.not_in(AUTOMATED_SOURCES))
            .scalar_subquery())


async def first_owner_activity(session: AsyncSession, leads: set[tuple[str, str]]) -> None:
    """Refresh first_owner_activity_ts (`_first_owner_activity_ts`) of these leads."""
    await _per_chunk_of_leads(session, _FIRST_OWNER_ACTIVITY[dialect_name(session)], leads)


async def _per_chunk_of_leads(session: AsyncSession, statement: Any, leads: set[tuple[str, str]]) -> None:
    for org, ids in by_org(leads).items():
        for i in range(0, len(ids), CHUNK):
            await session.execute(statement, {"org": org, "lead_ids": ids[i:i + CHUNK]})


COPIED = {"lead_pipeline_id": "pipeline_id", "cohort_ts": "pipeline_entered_ts"}


def copy_statements(dialect: str) -> tuple[sa.Update, sa.Update]:
    """copy_lead_attributes' updates of the leads' timeline rows and of the leads, for the leads `lead_ids`
    of the org `org` (bound at execution)."""
    t, lead, k = m_timeline, m_leads, m_tasks
    values: dict[str, Any] = {
        col: sa.select(lead.c[src]).where(lead.c.org_id == t.c.org_id, lead.c.lead_id == t.c.lead_id)
        .scalar_subquery() for col, src in COPIED.items()}
    # the required tasks of this visit alone: created from its entry until its exit (a task with no known
    # creation time counts for every visit of the stage)
    stage_tasks = sa.and_(k.c.org_id == t.c.org_id, k.c.lead_id == t.c.lead_id, k.c.stage_id == t.c.stage_id,
                          k.c.required, sa.or_(k.c.created_ts.is_(None), sa.and_(
                              k.c.created_ts >= t.c.at_ts,
                              sa.or_(t.c.next_ts.is_(None), k.c.created_ts < t.c.next_ts))))
    values["tasks_done"] = sa.and_(sa.exists().where(stage_tasks),
                                   sa.not_(sa.exists().where(stage_tasks, k.c.status != "completed")))
    open_required = sa.and_(k.c.org_id == lead.c.org_id, k.c.lead_id == lead.c.lead_id, k.c.required,
                            k.c.status == "open")
    lead_values = {"open_task_due_ts": sa.select(sa.func.min(k.c.due_ts)).where(open_required).scalar_subquery(),
                   "open_task_overdue": sa.exists().where(open_required, k.c.overdue)}
    if dialect == "postgresql":
        lead_values["first_owner_activity_ts"] = _first_owner_activity_ts()
    org: Any = sa.bindparam("org")  # (an UPDATE's parameters must not be named as its columns)
    rows = sa.update(t).where(t.c.org_id == org, among(t.c.lead_id, "lead_ids", dialect)).values(**values)
    leads_of_rows = sa.update(lead).where(lead.c.org_id == org, among(lead.c.lead_id, "lead_ids", dialect)) \
        .values(**lead_values)
    return rows, leads_of_rows


def _copy_in_one(rows: sa.Update, leads_of_rows: sa.Update) -> sa.Update:
    """PostgreSQL: both updates in one statement: they read nothing the other writes (the rows read the leads'
    pipeline and entry, the leads their tasks, activities and first owner), so one snapshot for both changes
    nothing."""
    return leads_of_rows.add_cte(rows.returning(m_timeline.c.event_id).cte("timeline_rows"))


# Built once: every batch that touches a lead runs them.
_COPY_ATTRIBUTES = {"postgresql": (_copy_in_one(*copy_statements("postgresql")),),
                    "sqlite": copy_statements("sqlite")}
_FIRST_OWNER_ACTIVITY = {dialect: sa.update(m_leads).where(
    m_leads.c.org_id == sa.bindparam("org"), among(m_leads.c.lead_id, "lead_ids", dialect)).values(
    first_owner_activity_ts=_first_owner_activity_ts()) for dialect in ("postgresql", "sqlite")}


async def copy_lead_attributes(session: AsyncSession, leads: set[tuple[str, str]],
                               first_activity: set[tuple[str, str]]) -> None:
    """Copy the leads' pipeline and pipeline-entry time onto their timeline rows, and refresh
    the task facts: tasks_done per stay, open_task_due_ts / open_task_overdue per lead; and the first owner
    activity of the leads `first_activity` (`first_owner_activity`).

    On PostgreSQL all in one statement per chunk of the leads of both sets: every value written is a function of
    other rows (the lead's pipeline, its tasks, its activities and first owner), none of which this statement
    writes, so refreshing a lead of one set for the other too writes what it holds already."""
    dialect = dialect_name(session)
    if dialect == "postgresql":
        leads = leads | first_activity
    else:
        await first_owner_activity(session, first_activity)
    for statement in _COPY_ATTRIBUTES[dialect]:
        await _per_chunk_of_leads(session, statement, leads)


_TIMELINE_COLUMNS = ("lead_id", "event_id", "kind", "at_ts", "rank", "pipeline_id", "stage_id", "position",
                     "is_ask", "win_probability", "reason", "value", "currency", "next_ts", "next_kind",
                     "next_position", "next_reason", "owner_id", "team_id")
HISTORY_COLUMNS = ("event_id", "lead_id", "at_ts", "ver", "tb", "owner_id", "team_id", "territory_id", "trigger")
_HISTORY_ONLY = ("ver", "tb", "territory_id", "trigger")
# The m_leads columns `write_timeline_facts` writes (domain.timeline.lead_facts and lead_credit), read back with
# the timelines (as "f_" + name) so that facts a batch leaves as they are are not written again.
FACT_COLUMNS = ("pipeline_id", "pipeline_entered_ts", "first_position", "max_position", "ask_entered_ts",
                "current_stage_id", "current_position", "current_stage_entered_ts", "current_win_probability",
                "outcome", "closed_ts", "won_value", "won_currency", "reopen_count", "credit_owner_id",
                "credit_team_id", "credit_territory_id", "first_owner_id", "first_team_id", "first_territory_id")


# The facts of an m_leads row as a batch's source upserts insert it (the columns' defaults).
NEW_LEAD_FACTS: Row = {**dict.fromkeys(FACT_COLUMNS), "outcome": "open", "reopen_count": 0}


def timeline_branches(dialect: str, ids: str) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]]:
    """The leads' (of the org `org_id`, among the parameter `ids`) timeline rows, assignment history, and
    creation times and stored facts, as `tagged_union`'s columns and branches (sources "timeline", "history",
    "created"): read by `timelines`, or with the rollups' "before" (rollups.contributions)."""
    t, a, lead = m_timeline.c, m_assignments.c, m_leads.c
    org: Any = sa.bindparam("org_id")
    columns = {**{name: t[name].type for name in _TIMELINE_COLUMNS}, **{name: a[name].type for name in _HISTORY_ONLY},
               **{f"f_{name}": lead[name].type for name in FACT_COLUMNS}}
    return columns, {
        "timeline": ({name: t[name] for name in _TIMELINE_COLUMNS}, t.org_id == org, among(t.lead_id, ids, dialect)),
        "history": ({name: a[name] for name in HISTORY_COLUMNS}, a.org_id == org, among(a.lead_id, ids, dialect)),
        "created": ({"lead_id": lead.lead_id, "at_ts": lead.created_ts,
                     **{f"f_{name}": lead[name] for name in FACT_COLUMNS}}, lead.org_id == org,
                    among(lead.lead_id, ids, dialect))}


def _timelines_statement(dialect: str) -> sa.CompoundSelect:
    """`timeline_branches` as one UNION ALL (one round trip per chunk of leads instead of three)."""
    return tagged_union(*timeline_branches(dialect, "lead_ids"))


# Built once: every projected batch that touches a lead reads it (on SQLite; PostgreSQL reads it with the
# rollups' "before").
_TIMELINES = {dialect: _timelines_statement(dialect) for dialect in ("postgresql", "sqlite")}


@dataclass
class Timelines:
    """What `timeline_branches` reads of some leads."""

    rows: dict[str, list[Row]] = field(default_factory=dict)  # each lead's timeline rows (every lead, maybe none)
    history: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))  # their assignment history
    created: dict[str, float | None] = field(default_factory=dict)  # the creation time of each lead in m_leads
    facts: dict[str, Row] = field(default_factory=dict)  # the stored FACT_COLUMNS of each lead in m_leads

    def add(self, rows: Iterable[Any], lead_ids: Iterable[str]) -> None:
        """Add the rows `timeline_branches` read of these leads."""
        for lead_id in lead_ids:
            self.rows.setdefault(lead_id, [])
        for r in rows:
            row = r._mapping
            if r.source == "timeline":
                self.rows[r.lead_id].append({name: row[name] for name in _TIMELINE_COLUMNS})
            elif r.source == "history":
                self.history[r.lead_id].append({name: row[name] for name in HISTORY_COLUMNS})
            elif r.source == "created":
                self.created[r.lead_id] = r.at_ts
                self.facts[r.lead_id] = {name: row[f"f_{name}"] for name in FACT_COLUMNS}


async def timelines(session: AsyncSession, org_id: str, lead_ids: list[str]) -> Timelines:
    """For these leads of the org: their timeline rows, their assignment history, their creation times and
    stored facts (one statement)."""
    dialect = "postgresql" if _dialect(session) == "postgresql" else "sqlite"
    read = Timelines()
    read.add(await session.execute(_TIMELINES[dialect], {"org_id": org_id, "lead_ids": lead_ids}), lead_ids)
    return read


_UPDATE_SUCCESSORS = sa.update(m_timeline).where(m_timeline.c.event_id == sa.bindparam("b_event_id")).values(
    next_ts=sa.bindparam("b_next_ts"), next_kind=sa.bindparam("b_next_kind"),
    next_position=sa.bindparam("b_next_position"), next_reason=sa.bindparam("b_next_reason"),
    owner_id=sa.bindparam("b_owner_id"), team_id=sa.bindparam("b_team_id"))


async def write_timeline_facts(session: AsyncSession, changed: list[Row], facts_rows: list[Row]) -> None:
    """The timeline rows' new successors and credited owner (`changed`, b_-prefixed), and the leads' facts."""
    if changed:
        await session.execute(_UPDATE_SUCCESSORS, changed)
    if not facts_rows:
        return
    fact_columns = [c for c in facts_rows[0] if c not in ("org_id", "lead_id")]
    await _upsert(session, "facts", m_leads, ["org_id", "lead_id"], facts_rows,
                  lambda x: {c: x[c] for c in fact_columns})
