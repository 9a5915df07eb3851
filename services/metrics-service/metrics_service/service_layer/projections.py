"""From the event log to the read models.

The consumer only appends each event to the log (`record`: ON CONFLICT DO NOTHING on the event id, so a
duplicate has no effect). The projector (`project_pending`) then claims unprojected log rows in batches and
applies each batch with set-based upserts (`apply_batch`), in one transaction with marking them projected.

Every projection is order-independent, so batches may hold events in any order and a rebuild (the same code
over the whole log, in another order) gives the same tables:
- attributes are last-writer-wins on (subject_version, occurred_at|event_id) per source (lead snapshot,
  routing, assignment), reduced within a batch and compared with the stored row in the upsert;
- counters are added once per logged event (an activity id once), task status has a precedence
  (completed > skipped > open), first-activity times are minima recomputed from the activities;
- a lead's timeline facts (stays, exits, outcome) are recomputed from all its timeline rows sorted by time.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.db import rows_affected
from salesflow_shared.events import Envelope, EventData, parse_data, utcnow
from salesflow_shared.events import catalogue as ev
from salesflow_shared.inbox import dialect_insert

from ..adapters import rollups
from ..adapters.orm import (
    event_log,
    m_activities,
    m_assignments,
    m_leads,
    m_rep_daily,
    m_reps,
    m_stages,
    m_tasks,
    m_timeline,
    one_of,
)
from ..domain import timeline
from ..domain.periods import date_ts, day_number, tiebreak, to_ts

FIRST_RESPONSE_KINDS = ("call", "email", "meeting")
AUTOMATED_SOURCES = ("sequence",)  # an activity a machine logged for the rep: never a human response
PERSONAL_KEYS = ("contact", "company", "postcode", "custom_fields", "utm")
CHUNK = 400  # rows per multi-row statement (keeps bind parameters under the drivers' limits)
PROJECTOR_LOCK = "metrics-projector"


async def record(session: AsyncSession, envelope: Envelope) -> bool:
    """Append to the log; False when this event id is already there."""
    insert = dialect_insert(session)
    result = await session.execute(insert(event_log).values(
        event_id=str(envelope.id), org_id=envelope.org_id, event_type=envelope.type,
        event_version=envelope.version, producer=envelope.producer, subject_id=envelope.subject_id,
        subject_version=envelope.subject_version, occurred_at=envelope.occurred_at,
        correlation_id=envelope.correlation_id, causation_id=envelope.causation_id,
        data=envelope.data, recorded_at=utcnow(), projected=False,
    ).on_conflict_do_nothing(index_elements=["event_id"]))
    return rows_affected(result) == 1


async def record_many(session: AsyncSession, envelopes: list[Envelope]) -> None:
    """`record` for a batch of deliveries, in one statement."""
    if not envelopes:
        return
    now = utcnow()
    # rows as parameters (compiled once, cached), not inlined with .values([...]) (compiled for every batch)
    await session.execute(dialect_insert(session)(event_log).on_conflict_do_nothing(index_elements=["event_id"]), [dict(
        event_id=str(e.id), org_id=e.org_id, event_type=e.type, event_version=e.version, producer=e.producer,
        subject_id=e.subject_id, subject_version=e.subject_version, occurred_at=e.occurred_at,
        correlation_id=e.correlation_id, causation_id=e.causation_id, data=e.data, recorded_at=now,
        projected=False) for e in envelopes])


# ------------------------------------------------------------------ the projector
async def project_pending(session: AsyncSession, *, batch_size: int = 1000, org_id: str | None = None,
                          order_by_event_id: bool = False, max_batches: int | None = None) -> int:
    """Apply unprojected log rows in batches (in the caller's transaction); returns how many were applied.

    One projector runs at a time: a lead's facts are recomputed from its rows, so two batches about one lead
    must not run in concurrent transactions, and two must never apply the same rows. On PostgreSQL a
    transaction-level advisory lock (another projector busy: return 0); on SQLite (the embedded mode, where
    the worker and a rebuild or `project_all` can overlap) the database's write lock, taken before reading
    what is pending, so a second projector waits and then sees the first one's rows as projected.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        got = (await session.execute(sa.text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"),
                                     {"k": PROJECTOR_LOCK})).scalar_one()
        if not got:
            return 0
    else:  # a write that changes nothing still makes this a write transaction, which holds the lock
        await session.execute(sa.update(event_log).where(sa.false()).values(projected=True))
    applied = batches = 0
    after = ""
    while max_batches is None or batches < max_batches:
        query = sa.select(event_log.c.seq, event_log.c.event_id, event_log.c.org_id, event_log.c.event_type,
                          event_log.c.event_version, event_log.c.producer, event_log.c.subject_id,
                          event_log.c.subject_version, event_log.c.occurred_at, event_log.c.data
                          ).where(sa.not_(event_log.c.projected))
        if org_id is not None:
            query = query.where(event_log.c.org_id == org_id)
        if order_by_event_id:
            query = query.where(event_log.c.event_id > after).order_by(event_log.c.event_id)
        else:
            query = query.order_by(event_log.c.seq)
        rows = (await session.execute(query.limit(batch_size))).all()
        if not rows:
            break
        await apply_batch(session, [_envelope(r) for r in rows])
        seqs = [r.seq for r in rows]
        for i in range(0, len(seqs), CHUNK * 5):
            await session.execute(sa.update(event_log).where(one_of(event_log.c.seq, seqs[i:i + CHUNK * 5], dialect))
                                  .values(projected=True))
        applied += len(rows)
        batches += 1
        after = rows[-1].event_id
        if len(rows) < batch_size:
            break
    return applied


def _envelope(row: Any) -> Envelope:
    return Envelope(id=row.event_id, type=row.event_type, version=row.event_version, org_id=row.org_id,
                    occurred_at=row.occurred_at, producer=row.producer, subject_id=row.subject_id,
                    subject_version=row.subject_version, data=row.data)


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


def _keep_newer(target: dict[Any, dict[str, Any]], key: Any, row: dict[str, Any], order: tuple[str, ...]) -> None:
    current = target.get(key)
    if current is None or tuple(row[k] for k in order) > tuple(current[k] for k in order):
        target[key] = row


async def apply_batch(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Apply new (never applied) events to the read models."""
    batch = Batch()
    for envelope in envelopes:
        _collect(batch, envelope, parse_data(envelope))
    await _already_erased(session, batch)
    await _write(session, batch)


async def _already_erased(session: AsyncSession, b: Batch) -> None:
    """A snapshot or an activity arriving after its lead's LeadErased (a late delivery, another producer's
    retry) carries the personal data the erasure removed: its lead is scrubbed again once it is logged."""
    mentioned = set(b.snapshots) | {(org, r["lead_id"]) for (org, _), r in b.activities.items()}
    for org, ids in _by_org(mentioned - set(b.erased)).items():
        for i in range(0, len(ids), CHUNK):
            erased = (await session.execute(sa.select(event_log.c.subject_id).where(
                event_log.c.org_id == org, event_log.c.event_type == "LeadErased",
                one_of(event_log.c.subject_id, ids[i:i + CHUNK], session.get_bind().dialect.name)))).scalars()
            b.erased.extend((org, lead_id) for lead_id in sorted(set(erased)))


def _collect(b: Batch, e: Envelope, data: EventData) -> None:
    org, tb = e.org_id, tiebreak(e.occurred_at, str(e.id))
    occurred = to_ts(e.occurred_at)
    assert occurred is not None
    if isinstance(data, (ev.LeadCreatedV1, ev.LeadUpdatedV1)):
        lead = data.lead
        created = isinstance(data, ev.LeadCreatedV1)
        row = {"org_id": org, "lead_id": lead.lead_id, "snap_ver": e.subject_version, "snap_tb": tb,
               "product_line": lead.product_line, "source": lead.source, "value": lead.value,
               "currency": lead.currency, "expected_close_ts": date_ts(lead.expected_close_date),
               "is_created": created, "created_ts": to_ts(lead.created_at) or (occurred if created else None)}
        key = (org, lead.lead_id)
        previous = b.snapshots.get(key)
        _keep_newer(b.snapshots, key, row, ("snap_ver", "snap_tb"))
        if previous is not None:  # creation facts merge whatever snapshot wins
            winner = b.snapshots[key]
            creator = next((r for r in (row, previous) if r["is_created"]), None)
            winner["is_created"] = creator is not None
            winner["created_ts"] = (creator["created_ts"] if creator is not None
                                    else winner["created_ts"] or previous["created_ts"] or row["created_ts"])
        b.recompute.add(key)  # the owner at creation depends on the creation time, and so does
        b.first_activity.add(key)  # the first human touch by that owner
        if created:
            b.count(org, lead.owner_id, occurred, records_entered=1)
        elif isinstance(data, ev.LeadUpdatedV1) and data.cause in (None, "edit"):
            b.count(org, lead.owner_id, occurred, records_updated=1)
    elif isinstance(data, ev.LeadRoutedV1):
        _keep_newer(b.routes, (org, data.lead_id), {
            "org_id": org, "lead_id": data.lead_id, "route_ver": e.subject_version, "route_tb": tb,
            "routed_pipeline_id": data.pipeline_id, "routed_territory_id": data.territory_id,
            "territory_id": data.territory_id}, ("route_ver", "route_tb"))
    elif isinstance(data, ev.LeadAssignedV1):
        _keep_newer(b.assignments, (org, data.lead_id), {
            "org_id": org, "lead_id": data.lead_id, "assign_ver": e.subject_version, "assign_tb": tb,
            "owner_id": data.owner_id, "team_id": data.team_id, "assigned_territory_id": data.territory_id,
            "territory_id": data.territory_id}, ("assign_ver", "assign_tb"))
        if data.owner_id:
            _keep_newer(b.reps, (org, data.owner_id), {"org_id": org, "rep_id": data.owner_id,
                                                       "name": data.owner_name, "team_id": data.team_id, "tb": tb},
                        ("tb",))
        b.assignment_history.append({
            "event_id": str(e.id), "org_id": org, "lead_id": data.lead_id, "at_ts": occurred,
            "ver": e.subject_version, "tb": tb, "owner_id": data.owner_id, "team_id": data.team_id,
            "territory_id": data.territory_id, "trigger": data.trigger})
        b.recompute.add((org, data.lead_id))  # who is credited with its stays and outcomes may change
        b.first_activity.add((org, data.lead_id))
    elif isinstance(data, ev.StageAdvancedV1):
        probability = _probability(data.win_probability)
        b.timeline.append(_timeline_row(e, data.lead_id, "stage", data.entered_at, pipeline_id=data.pipeline_id,
                                        stage_id=data.to_stage_id, position=data.to_stage_position,
                                        is_ask=data.is_ask_stage, win_probability=probability, reason=data.reason))
        _keep_newer(b.stages, (org, data.pipeline_id, data.to_stage_id), {
            "org_id": org, "pipeline_id": data.pipeline_id, "stage_id": data.to_stage_id,
            "name": data.to_stage_name, "position": data.to_stage_position, "is_ask": data.is_ask_stage,
            "win_probability": probability, "tb": tiebreak(data.entered_at, str(e.id))}, ("tb",))
        b.recompute.add((org, data.lead_id))
    elif isinstance(data, ev.LeadWonV1):
        b.timeline.append(_timeline_row(e, data.lead_id, "won", data.won_at, pipeline_id=data.pipeline_id,
                                        stage_id=data.stage_id, value=data.value, currency=data.currency))
        b.recompute.add((org, data.lead_id))
    elif isinstance(data, ev.LeadLostV1):
        b.timeline.append(_timeline_row(e, data.lead_id, "lost", data.lost_at, pipeline_id=data.pipeline_id,
                                        stage_id=data.stage_id, reason=data.reason[:40]))
        b.recompute.add((org, data.lead_id))
    elif isinstance(data, ev.LeadReopenedV1):
        b.timeline.append(_timeline_row(e, data.lead_id, "reopened", data.reopened_at,
                                        pipeline_id=data.pipeline_id))
        b.recompute.add((org, data.lead_id))
    elif isinstance(data, ev.LeadDisqualifiedV1):
        b.timeline.append(_timeline_row(e, data.lead_id, "disqualified", e.occurred_at, reason=data.reason[:40]))
        b.recompute.add((org, data.lead_id))
    elif isinstance(data, ev.ActivityLoggedV1):
        # the same activity under two event ids (a producer's retry) counts once: keep the lowest event id
        _keep_newer(b.activities, (org, data.activity_id), {
            "org_id": org, "activity_id": data.activity_id, "lead_id": data.lead_id, "rep_id": data.rep_id,
            "kind": data.kind, "source": data.source, "occurred_ts": to_ts(data.occurred_at),
            "duration_seconds": data.duration_seconds, "_rank": _negated(str(e.id))}, ("_rank",))
    elif isinstance(data, (ev.TaskCreatedV1, ev.TaskCompletedV1, ev.TaskSkippedV1, ev.TaskOverdueV1)):
        row = {"org_id": org, "task_id": data.task_id, "lead_id": data.lead_id, "stage_id": data.stage_id,
               "required": bool(getattr(data, "required", False)), "due_ts": to_ts(getattr(data, "due_at", None)),
               "status": ("completed" if isinstance(data, ev.TaskCompletedV1) else
                          "skipped" if isinstance(data, ev.TaskSkippedV1) else "open"),
               "overdue": isinstance(data, ev.TaskOverdueV1),
               "created_ts": occurred if isinstance(data, ev.TaskCreatedV1) else None}
        key = (org, data.task_id)
        b.tasks[key] = _merge_task(b.tasks[key], row) if key in b.tasks else row
    elif isinstance(data, ev.LeadErasedV1):
        b.erased.append((org, data.lead_id))


def _negated(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


STATUS_RANK = {"open": 0, "skipped": 1, "completed": 2}


def _merge_task(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {**a, "lead_id": a["lead_id"] or b["lead_id"], "stage_id": a["stage_id"] or b["stage_id"],
            "required": a["required"] or b["required"],
            "due_ts": a["due_ts"] if a["due_ts"] is not None else b["due_ts"],
            "status": max(a["status"], b["status"], key=STATUS_RANK.__getitem__),
            "overdue": a["overdue"] or b["overdue"],
            "created_ts": min((t for t in (a["created_ts"], b["created_ts"]) if t is not None), default=None)}


def _probability(value: Decimal | None) -> Decimal | None:
    """A stage's win probability as a fraction 0..1 (a value above 1 is read as a percentage)."""
    if value is None:
        return None
    return value / 100 if value > 1 else value


def _timeline_row(e: Envelope, lead_id: str, kind: str, at: Any, **fields: Any) -> dict[str, Any]:
    row = {"event_id": str(e.id), "org_id": e.org_id, "lead_id": lead_id, "kind": kind, "at_ts": to_ts(at),
           "rank": timeline.TIE_RANK[kind], "pipeline_id": None, "stage_id": None, "position": None,
           "is_ask": False, "win_probability": None, "reason": None, "value": None, "currency": None}
    row.update(fields)
    return row


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


async def _upsert(session: AsyncSession, table: sa.Table, keys: list[str], rows: Sequence[dict[str, Any]],
                  set_for: Any) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET set_for(excluded), executed for many rows (one statement,
    compiled once; SQLAlchemy sends the rows as multi-row VALUES pages)."""
    if not rows:
        return
    stmt = dialect_insert(session)(table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_for(stmt.excluded))
    for chunk in _chunks(rows):
        await session.execute(stmt, chunk)


async def _upsert_lww(session: AsyncSession, table: sa.Table, keys: list[str], rows: Sequence[dict[str, Any]],
                      ver: str | None, tb: str, extra: Any = None) -> None:
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]

    def set_for(x: Any) -> dict[str, Any]:
        newer = _newer(table, ver, tb, x)
        out = {c: sa.case((newer, x[c]), else_=table.c[c]) for c in columns}
        if extra is not None:
            out.update(extra(x, newer))
        return out
    await _upsert(session, table, keys, rows, set_for)


def _territory(x: Any, newer: Any, *, from_assignment: bool) -> dict[str, Any]:
    t = m_leads.c
    assigned = sa.case((newer, x.assigned_territory_id), else_=t.assigned_territory_id) if from_assignment \
        else t.assigned_territory_id
    routed = t.routed_territory_id if from_assignment \
        else sa.case((newer, x.routed_territory_id), else_=t.routed_territory_id)
    return {"territory_id": sa.func.coalesce(assigned, routed)}


async def _write(session: AsyncSession, b: Batch) -> None:
    if session.get_bind().dialect.name != "postgresql":
        # The rollups are PostgreSQL's (reports at scale); their differences need one projector at a time,
        # which the advisory lock guarantees there, and SQLite's driver reads outside the transaction.
        await _write_read_models(session, b)
        return
    # every lead whose facts, owner, team, pipeline, first response or stays this batch may change (rollups.py)
    touched = set(b.snapshots) | set(b.assignments) | b.recompute | b.first_activity | {
        (org, r["lead_id"]) for (org, _), r in b.tasks.items() if r["lead_id"]} | {
        (org, r["lead_id"]) for (org, _), r in b.activities.items() if r["kind"] in FIRST_RESPONSE_KINDS}
    before = await rollups.contributions(session, touched)
    await _write_read_models(session, b)
    await rollups.add_difference(session, before, await rollups.contributions(session, touched))


async def _write_read_models(session: AsyncSession, b: Batch) -> None:
    lead_keys = ["org_id", "lead_id"]
    await _upsert_lww(session, m_leads, lead_keys, list(b.snapshots.values()), "snap_ver", "snap_tb",
                      lambda x, newer: {
                          "is_created": sa.or_(m_leads.c.is_created, x.is_created),
                          # LeadCreated's creation time is authoritative; an update only fills a missing one
                          "created_ts": sa.case((x.is_created, x.created_ts),
                                                else_=sa.func.coalesce(m_leads.c.created_ts, x.created_ts))})
    await _upsert_lww(session, m_leads, lead_keys, list(b.routes.values()), "route_ver", "route_tb",
                      lambda x, newer: _territory(x, newer, from_assignment=False))
    await _upsert_lww(session, m_leads, lead_keys, list(b.assignments.values()), "assign_ver", "assign_tb",
                      lambda x, newer: _territory(x, newer, from_assignment=True))
    await _upsert_lww(session, m_reps, ["org_id", "rep_id"], list(b.reps.values()), None, "tb")
    await _upsert_lww(session, m_stages, ["org_id", "pipeline_id", "stage_id"], list(b.stages.values()), None, "tb")
    timeline_insert = dialect_insert(session)(m_timeline).on_conflict_do_nothing(index_elements=["event_id"])
    for chunk in _chunks(b.timeline):
        await session.execute(timeline_insert, chunk)
    history_insert = dialect_insert(session)(m_assignments).on_conflict_do_nothing(index_elements=["event_id"])
    for chunk in _chunks(b.assignment_history):
        await session.execute(history_insert, chunk)
    await _write_activities(session, b)
    t = m_tasks.c

    def task_set(x: Any) -> dict[str, Any]:
        return {"lead_id": sa.func.coalesce(t.lead_id, x.lead_id), "stage_id": sa.func.coalesce(t.stage_id, x.stage_id),
                "required": sa.or_(t.required, x.required), "due_ts": sa.func.coalesce(x.due_ts, t.due_ts),
                "status": sa.case((sa.or_(t.status == "completed", x.status == "completed"), "completed"),
                                  (sa.or_(t.status == "skipped", x.status == "skipped"), "skipped"), else_="open"),
                "overdue": sa.or_(t.overdue, x.overdue),
                "created_ts": sa.case((t.created_ts.is_(None), x.created_ts), (x.created_ts.is_(None), t.created_ts),
                                      (x.created_ts < t.created_ts, x.created_ts), else_=t.created_ts)}
    await _upsert(session, m_tasks, ["org_id", "task_id"], list(b.tasks.values()), task_set)
    counters = [{"org_id": org, "rep_id": rep, "day": day, **{c: values.get(c, 0) for c in _COUNTERS}}
                for (org, rep, day), values in b.counters.items()]
    await _upsert(session, m_rep_daily, ["org_id", "rep_id", "day"], counters,
                  lambda x: {c: m_rep_daily.c[c] + x[c] for c in _COUNTERS})
    for org, lead_id in b.erased:
        await _scrub(session, org, lead_id)
    await recompute_leads(session, b.recompute)
    await first_owner_activity(session, b.first_activity)
    await copy_lead_attributes(session, b.recompute | set(b.assignments) | {
        (org, r["lead_id"]) for (org, _), r in b.tasks.items() if r["lead_id"]})


_COUNTERS = ("calls", "talk_seconds", "emails_logged", "emails_sequence", "meetings", "demos", "proposals", "notes",
             "records_entered", "records_updated")
_ACTIVITY_COUNTERS = {"call": "calls", "meeting": "meetings", "demo": "demos", "proposal": "proposals",
                      "note": "notes"}


async def _write_activities(session: AsyncSession, b: Batch) -> None:
    rows = [{k: v for k, v in r.items() if k != "_rank"} for r in b.activities.values()]
    if not rows:
        return
    stmt = dialect_insert(session)(m_activities).on_conflict_do_nothing(
        index_elements=["org_id", "activity_id"]).returning(m_activities.c.org_id, m_activities.c.activity_id)
    inserted: set[tuple[str, str]] = set()
    for chunk in _chunks(rows):
        inserted.update((r.org_id, r.activity_id) for r in await session.execute(stmt, chunk))
    for r in rows:
        if (r["org_id"], r["activity_id"]) not in inserted:  # already counted (same activity, other event id)
            continue
        if r["kind"] == "email":
            b.count(r["org_id"], r["rep_id"], r["occurred_ts"],
                    **{"emails_sequence" if r["source"] == "sequence" else "emails_logged": 1})
        elif r["kind"] == "call":
            b.count(r["org_id"], r["rep_id"], r["occurred_ts"], calls=1, talk_seconds=r["duration_seconds"] or 0)
        else:
            b.count(r["org_id"], r["rep_id"], r["occurred_ts"], **{_ACTIVITY_COUNTERS[r["kind"]]: 1})
        if r["kind"] in FIRST_RESPONSE_KINDS and r["rep_id"] and r["source"] not in AUTOMATED_SOURCES:
            b.first_activity.add((r["org_id"], r["lead_id"]))


async def _scrub(session: AsyncSession, org_id: str, lead_id: str) -> None:
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


def _by_org(leads: set[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for org, lead_id in sorted(leads):
        out[org].append(lead_id)
    return out


async def first_owner_activity(session: AsyncSession, leads: set[tuple[str, str]]) -> None:
    """first_owner_activity_ts = the earliest call, email or meeting on the lead that its owner at creation
    logged (a sequence's automated email is not a response)."""
    a = m_activities
    first = (sa.select(sa.func.min(a.c.occurred_ts))
             .where(a.c.org_id == m_leads.c.org_id, a.c.lead_id == m_leads.c.lead_id,
                    a.c.rep_id == m_leads.c.first_owner_id, a.c.kind.in_(FIRST_RESPONSE_KINDS),
                    a.c.source.not_in(AUTOMATED_SOURCES))
             .scalar_subquery())
    for org, ids in _by_org(leads).items():
        for i in range(0, len(ids), CHUNK):
            await session.execute(sa.update(m_leads).where(m_leads.c.org_id == org, one_of(
                m_leads.c.lead_id, ids[i:i + CHUNK], session.get_bind().dialect.name))
                                  .values(first_owner_activity_ts=first))


COPIED = {"lead_pipeline_id": "pipeline_id", "cohort_ts": "pipeline_entered_ts"}


async def copy_lead_attributes(session: AsyncSession, leads: set[tuple[str, str]]) -> None:
    """Copy the leads' pipeline and pipeline-entry time onto their timeline rows, and refresh
    the task facts: tasks_done per stay, open_task_due_ts / open_task_overdue per lead."""
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
    dialect = session.get_bind().dialect.name
    for org, ids in _by_org(leads).items():
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            await session.execute(sa.update(t).where(t.c.org_id == org, one_of(t.c.lead_id, part, dialect))
                                  .values(**values))
            await session.execute(sa.update(lead).where(lead.c.org_id == org, one_of(lead.c.lead_id, part, dialect))
                                  .values(**lead_values))


async def recompute_leads(session: AsyncSession, leads: set[tuple[str, str]]) -> None:
    """Recompute the successors of the leads' timeline rows, the owner credited with each row (from the
    assignment history), and their timeline facts and credit on m_leads."""
    t, a, lead = m_timeline.c, m_assignments.c, m_leads.c
    dialect = session.get_bind().dialect.name
    for org, ids in _by_org(leads).items():
        for i in range(0, len(ids), CHUNK):
            part = ids[i:i + CHUNK]
            rows = (await session.execute(sa.select(
                t.lead_id, t.event_id, t.kind, t.at_ts, t.rank, t.pipeline_id, t.stage_id, t.position, t.is_ask,
                t.win_probability, t.reason, t.value, t.currency, t.next_ts, t.next_kind, t.next_position,
                t.next_reason, t.owner_id, t.team_id).where(t.org_id == org, one_of(t.lead_id, part, dialect)))).all()
            per_lead: dict[str, list[dict[str, Any]]] = {lead_id: [] for lead_id in part}
            for r in rows:
                per_lead[r.lead_id].append(dict(r._mapping))
            history: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for h in await session.execute(sa.select(a.lead_id, a.at_ts, a.ver, a.tb, a.owner_id, a.team_id,
                                                     a.territory_id, a.trigger)
                                           .where(a.org_id == org, one_of(a.lead_id, part, dialect))):
                history[h.lead_id].append(dict(h._mapping))
            created = dict((await session.execute(sa.select(lead.lead_id, lead.created_ts).where(
                lead.org_id == org, one_of(lead.lead_id, part, dialect)))).all())
            changed: list[dict[str, Any]] = []
            facts_rows: list[dict[str, Any]] = []
            for lead_id, lead_rows in per_lead.items():
                succ = timeline.successors(lead_rows)
                owners = history[lead_id]
                changed.extend(c for c in (_row_change(r, succ[r["event_id"]], timeline.row_credit(
                    r, succ[r["event_id"]], owners)) for r in lead_rows) if c)
                facts = timeline.lead_facts(lead_rows)
                facts_rows.append({"org_id": org, "lead_id": lead_id, **facts,
                                   **timeline.lead_credit(facts, created.get(lead_id), owners)})
            if changed:
                await session.execute(
                    sa.update(m_timeline).where(m_timeline.c.event_id == sa.bindparam("b_event_id")).values(
                        next_ts=sa.bindparam("b_next_ts"), next_kind=sa.bindparam("b_next_kind"),
                        next_position=sa.bindparam("b_next_position"), next_reason=sa.bindparam("b_next_reason"),
                        owner_id=sa.bindparam("b_owner_id"), team_id=sa.bindparam("b_team_id")),
                    changed)
            fact_columns = [c for c in facts_rows[0] if c not in ("org_id", "lead_id")]
            await _upsert(session, m_leads, ["org_id", "lead_id"], facts_rows,
                          lambda x, columns=fact_columns: {c: x[c] for c in columns})


def _row_change(row: dict[str, Any], nxt: tuple[Any, Any, Any, Any], credit: timeline.Owner
                ) -> dict[str, Any] | None:
    if ((row["next_ts"], row["next_kind"], row["next_position"], row["next_reason"]) == nxt
            and (row["owner_id"], row["team_id"]) == credit[:2]):
        return None
    return {"b_event_id": row["event_id"], "b_next_ts": nxt[0], "b_next_kind": nxt[1],
            "b_next_position": nxt[2], "b_next_reason": nxt[3], "b_owner_id": credit[0], "b_team_id": credit[1]}
