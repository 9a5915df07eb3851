"""From the event log to the read models.

The consumer appends each delivered batch to the log (ON CONFLICT DO NOTHING on the event id, so a duplicate
has no effect) and, when the projector runs in its process and none is busy, applies the new events in the same
transaction, logged as projected (`record_and_apply`). Otherwise the projector (`project_pending`) claims
unprojected log rows in batches and applies each batch with set-based upserts (`apply_batch`), in one
transaction with marking them projected.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.events import Envelope, EventData, parse_data
from salesflow_shared.events import catalogue as ev

from ..adapters import read_models, rollups
from ..adapters.read_models import (
    AUTOMATED_SOURCES,
    FIRST_RESPONSE_KINDS,
    PROJECTOR_LOCK,
    Batch,
    Row,
    record_many,
)
from ..domain import timeline
from ..domain.periods import date_ts, tiebreak, to_ts

__all__ = ["PROJECTOR_LOCK", "Recorded", "apply_batch", "project_pending", "recompute_leads", "record_and_apply",
           "record_many"]


# ------------------------------------------------------------------ the projector
@dataclass(frozen=True)
class Recorded:
    """What `record_and_apply` did with a delivered batch."""

    logged: set[str]  # the ids of the events logged now (the others were redeliveries)
    left: bool  # some were left to the projector worker (another projector had the turn)
    drained: bool  # every event waiting before was applied too (`drain` asked, and none was left over)


async def record_and_apply(session: AsyncSession, envelopes: list[Envelope], recorded_at: datetime, *,
                           drain: bool = False, batch_size: int = 1000) -> Recorded:
    """Log a delivered batch and, when this transaction can be the projector (none is busy), apply its new
    events in the same transaction, logged as projected: one commit per batch instead of the consumer's and the
    projector's. With `drain` (events may wait in the log), up to `batch_size` waiting events are claimed and
    applied with them (by the consumer, rather than by the worker in another transaction beside it).

    Events are applied in any order (the projections are order-independent), so a batch applied here while
    older ones wait, or with them, gives the same read models."""
    logged = await read_models.record_taking_turn(session, envelopes, recorded_at)
    now: dict[str, Envelope] = {}
    for envelope in envelopes:
        if logged.get(str(envelope.id)):
            now.setdefault(str(envelope.id), envelope)
    drained = False
    if drain and now:  # the turn is this transaction's
        waiting = await read_models.claim_pending(session, batch_size)
        now.update((row.event_id, row.envelope) for row in waiting)
        drained = len(waiting) < batch_size
    if now:
        await apply_batch(session, list(now.values()))
    return Recorded(set(logged), any(not taken for taken in logged.values()), drained)


async def project_pending(session: AsyncSession, *, batch_size: int = 1000, org_id: str | None = None,
                          order_by_event_id: bool = False, max_batches: int | None = None) -> int:
    """Apply unprojected log rows in batches (in the caller's transaction); returns how many were applied.

    One projector runs at a time (read_models.claim_pending: another one busy, nothing is taken): a lead's facts
    are recomputed from its rows, so two batches about one lead must not run in concurrent transactions, and two
    must never apply the same rows.
    """
    applied = batches = 0
    after = ""
    while max_batches is None or batches < max_batches:
        rows = await read_models.claim_pending(session, batch_size, org_id=org_id,
                                               after_event_id=after if order_by_event_id else None)
        if not rows:
            break
        await apply_batch(session, [r.envelope for r in rows])
        applied += len(rows)
        batches += 1
        after = rows[-1].event_id
        if len(rows) < batch_size:
            break
    return applied


def _keep_newer(target: dict[Any, dict[str, Any]], key: Any, row: dict[str, Any], order: tuple[str, ...]) -> None:
    current = target.get(key)
    if current is None or tuple(row[k] for k in order) > tuple(current[k] for k in order):
        target[key] = row


async def apply_batch(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Apply new (never applied) events to the read models."""
    batch = Batch()
    for envelope in envelopes:
        _collect(batch, envelope, parse_data(envelope))
    await _write(session, batch)


def _to_check_for_erasure(b: Batch) -> set[tuple[str, str]]:
    """A snapshot or an activity arriving after its lead's LeadErased (a late delivery, another producer's
    retry) carries the personal data the erasure removed: its lead is scrubbed again once it is logged. These
    leads are the batch's that may be such (`_write` asks the log which are)."""
    return (set(b.snapshots) | {(org, r["lead_id"]) for (org, _), r in b.activities.items()}) - set(b.erased)


async def _already_erased(session: AsyncSession, b: Batch) -> None:
    for org, ids in read_models.by_org(_to_check_for_erasure(b)).items():
        erased = await read_models.erased_among(session, org, ids)
        b.erased.extend((org, lead_id) for lead_id in sorted(erased))


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
        if created:  # (an update's snapshot: see `_recompute_after_snapshots`)
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
           "is_ask": False, "win_probability": None, "reason": None, "value": None, "currency": None,
           **_NO_SUCCESSOR}  # (successor and credit: filled in before the insert on PostgreSQL, else updated)
    row.update(fields)
    return row


# ------------------------------------------------------------------ writing a batch
def _recompute_after_snapshots(b: Batch, settled: set[tuple[str, str]]) -> None:
    """A snapshot's lead is recomputed, and its first owner activity refreshed (the owner at creation depends
    on the creation time, and so does the first human touch by that owner), unless it is an update's snapshot
    (not a creation) and its lead is `settled`: it has a creation time already (an update only fills a missing
    one), so that neither can change."""
    for key, row in b.snapshots.items():
        if row["is_created"] or key not in settled:
            b.recompute.add(key)
            b.first_activity.add(key)


async def _write(session: AsyncSession, b: Batch) -> None:
    if session.get_bind().dialect.name != "postgresql":
        # The rollups are PostgreSQL's (reports at scale); their differences need one projector at a time,
        # which the advisory lock guarantees there, and SQLite's driver reads outside the transaction.
        _recompute_after_snapshots(b, set())
        await _already_erased(session, b)
        await _write_read_models(session, b)
        return
    # every lead whose facts, owner, team, pipeline, first response or stays this batch may change (rollups.py)
    others = set(b.assignments) | b.recompute | b.first_activity | {
        (org, r["lead_id"]) for (org, _), r in b.tasks.items() if r["lead_id"]} | {
        (org, r["lead_id"]) for (org, _), r in b.activities.items() if _may_be_first_response(r)}
    touched = set(b.snapshots) | others
    # (the leads to check for erasure are asked with the rollups' "before", in the same round trip; and which
    # leads only an update's snapshot touches, that it cannot change: they are neither recomputed nor read after)
    # The timelines of the leads to recompute come in the same round trip too, as they are before the batch
    # (`_with_batch` adds what the batch writes to them).
    before = await rollups.contributions(session, touched, erased_among=_to_check_for_erasure(b), settle={
        key for key, row in b.snapshots.items() if not row["is_created"] and key not in others},
        timelines_of=b.recompute | set(b.snapshots))
    b.erased.extend(sorted(before.erased))
    _recompute_after_snapshots(b, before.settled)
    touched -= before.settled
    # Recomputed before the writes (from the timelines read before, with the batch's own rows added), so that
    # the batch's timeline rows are inserted with their successor and credit, and only the stored rows that
    # change are updated after.
    recomputed = [_recompute(_with_batch(before.timelines[org], b, org, chunk), org)
                  for org, chunk in _chunks_of_leads(b.recompute)]
    _fold_into_new_rows(b, recomputed)
    await _write_sources_and_facts(session, b, recomputed)
    # The copy of the lead attributes is the batch's last write to m_leads and m_timeline; it returns what the
    # leads contribute after the batch. It refreshes every touched lead: the leads it must refresh
    # (`_to_copy`) are among them, and refreshing another writes what it holds already.
    after = await rollups.copy_lead_attributes_and_contributions(session, touched)
    await rollups.add_difference(session, before.contributions, after)


async def _write_read_models(session: AsyncSession, b: Batch) -> None:
    await _write_sources_and_facts(session, b)
    await read_models.copy_lead_attributes(session, _to_copy(b), b.first_activity)


async def _write_sources_and_facts(session: AsyncSession, b: Batch,
                                   recomputed: list[Recomputed] | None = None) -> None:
    """Everything a batch writes but the copy of the lead attributes (`read_models.copy_lead_attributes`); the
    leads' recomputed timelines and facts as given (`recomputed`), else recomputed after the writes."""
    await read_models.write_sources(session, b)
    await _write_activities(session, b)
    await read_models.write_tasks_and_counters(session, b)
    for org, lead_id in b.erased:
        await read_models.scrub(session, org, lead_id)
    if recomputed is None:
        await recompute_leads(session, b.recompute)
        return
    for changed, facts_rows in recomputed:
        await read_models.write_timeline_facts(session, changed, facts_rows)


def _to_copy(b: Batch) -> set[tuple[str, str]]:
    """The leads whose copied attributes and task facts the batch may change (besides `b.first_activity`)."""
    return b.recompute | set(b.assignments) | {(org, r["lead_id"]) for (org, _), r in b.tasks.items() if r["lead_id"]}


_ACTIVITY_COUNTERS = {"call": "calls", "meeting": "meetings", "demo": "demos", "proposal": "proposals",
                      "note": "notes"}


async def _write_activities(session: AsyncSession, b: Batch) -> None:
    """Store the batch's activities and count each newly stored one on its rep's day (an activity already
    stored, under another event id, was counted then)."""
    rows = [{k: v for k, v in r.items() if k != "_rank"} for r in b.activities.values()]
    if not rows:
        return
    inserted = await read_models.insert_activities(session, rows)
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
        if _may_be_first_response(r):
            b.first_activity.add((r["org_id"], r["lead_id"]))


def _may_be_first_response(activity: Row) -> bool:
    """Whether the activity may be its lead's first response by its owner (the only way an activity changes
    its lead's facts, hence the rollups): a call, email or meeting a rep logged (a sequence's email is not)."""
    return (activity["kind"] in FIRST_RESPONSE_KINDS and bool(activity["rep_id"])
            and activity["source"] not in AUTOMATED_SOURCES)


Recomputed = tuple[list[Row], list[Row]]  # timeline rows' changes (b_-prefixed), leads' facts to write


def _chunks_of_leads(leads: set[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    return [(org, ids[i:i + read_models.CHUNK]) for org, ids in read_models.by_org(leads).items()
            for i in range(0, len(ids), read_models.CHUNK)]


async def recompute_leads(session: AsyncSession, leads: set[tuple[str, str]]) -> None:
    """Recompute the successors of the leads' timeline rows, the owner credited with each row (from the
    assignment history), and their timeline facts and credit on m_leads."""
    for org, chunk in _chunks_of_leads(leads):
        changed, facts_rows = _recompute(await read_models.timelines(session, org, chunk), org)
        await read_models.write_timeline_facts(session, changed, facts_rows)


def _recompute(read: read_models.Timelines, org: str) -> Recomputed:
    """`recompute_leads` of the leads read: the timeline rows whose successor or credit changes, and the facts
    of the leads whose facts change."""
    changed: list[Row] = []
    facts_rows: list[Row] = []
    for lead_id, lead_rows in read.rows.items():
        succ = timeline.successors(lead_rows)
        owners = read.history[lead_id]
        changed.extend(c for c in (_row_change(r, succ[r["event_id"]], timeline.row_credit(
            r, succ[r["event_id"]], owners)) for r in lead_rows) if c)
        facts = timeline.lead_facts(lead_rows)
        facts.update(timeline.lead_credit(facts, read.created.get(lead_id), owners))
        if not _holds(read.facts.get(lead_id), facts):  # (facts a batch leaves as they are: not written)
            facts_rows.append({"org_id": org, "lead_id": lead_id, **facts})
    return changed, facts_rows


def _fold_into_new_rows(b: Batch, recomputed: list[Recomputed]) -> None:
    """Move the changes of the batch's own timeline rows (not stored yet) into the rows it inserts, leaving
    the changes of stored rows to update."""
    new_rows = {r["event_id"]: r for r in b.timeline}
    for changed, _ in recomputed:
        stored = []
        for change in changed:
            row = new_rows.get(change["b_event_id"])
            if row is None:
                stored.append(change)
            else:
                row.update({name: change[f"b_{name}"] for name in _SUCCESSOR_AND_CREDIT})
        changed[:] = stored


def _with_batch(before: read_models.Timelines, b: Batch, org: str, lead_ids: list[str]) -> read_models.Timelines:
    """The timelines of these leads (of `before`, read before the batch `b` was written) as they are after it,
    as read_models.timelines would read them: the batch's timeline rows and assignment history added, the
    creation time its snapshot wrote (read_models.write_sources: a creation's, else the stored one, else the
    update's), and the facts of a lead row its source upserts inserted."""
    read = read_models.Timelines()
    wanted = set(lead_ids)
    new_rows: dict[str, list[Row]] = defaultdict(list)
    for r in b.timeline:
        if r["org_id"] == org and r["lead_id"] in wanted:
            new_rows[r["lead_id"]].append({**_NO_SUCCESSOR, **{name: r[name] for name in _NEW_TIMELINE_COLUMNS}})
    new_history: dict[str, list[Row]] = defaultdict(list)
    for a in b.assignment_history:
        if a["org_id"] == org and a["lead_id"] in wanted:
            new_history[a["lead_id"]].append({name: a[name] for name in read_models.HISTORY_COLUMNS})
    for lead_id in lead_ids:
        key = (org, lead_id)
        rows = list(before.rows[lead_id])  # (every lead to recompute was read)
        stored = {r["event_id"] for r in rows}
        read.rows[lead_id] = rows + [r for r in new_rows[lead_id] if r["event_id"] not in stored]
        history = list(before.history[lead_id])
        stored = {a["event_id"] for a in history}
        read.history[lead_id] = history + [a for a in new_history[lead_id] if a["event_id"] not in stored]
        snapshot = b.snapshots.get(key)
        if lead_id in before.created:
            read.created[lead_id] = before.created[lead_id] if snapshot is None else (
                snapshot["created_ts"] if snapshot["is_created"] or before.created[lead_id] is None
                else before.created[lead_id])
            read.facts[lead_id] = before.facts[lead_id]
        elif snapshot is not None or key in b.routes or key in b.assignments:  # the batch inserted its row
            read.created[lead_id] = None if snapshot is None else snapshot["created_ts"]
            read.facts[lead_id] = read_models.NEW_LEAD_FACTS
    return read


_SUCCESSOR_AND_CREDIT = ("next_ts", "next_kind", "next_position", "next_reason", "owner_id", "team_id")
_NO_SUCCESSOR = dict.fromkeys(_SUCCESSOR_AND_CREDIT)
_NEW_TIMELINE_COLUMNS = ("lead_id", "event_id", "kind", "at_ts", "rank", "pipeline_id", "stage_id", "position",
                         "is_ask", "win_probability", "reason", "value", "currency")


def _holds(stored: Row | None, facts: Row) -> bool:
    """Whether a lead's stored facts (None: it has no m_leads row yet) are these."""
    return stored is not None and all(name in stored and stored[name] == value for name, value in facts.items())


def _row_change(row: dict[str, Any], nxt: tuple[Any, Any, Any, Any], credit: timeline.Owner
                ) -> dict[str, Any] | None:
    if ((row["next_ts"], row["next_kind"], row["next_position"], row["next_reason"]) == nxt
            and (row["owner_id"], row["team_id"]) == credit[:2]):
        return None
    return {"b_event_id": row["event_id"], "b_next_ts": nxt[0], "b_next_kind": nxt[1],
            "b_next_position": nxt[2], "b_next_reason": nxt[3], "b_owner_id": credit[0], "b_team_id": credit[1]}
