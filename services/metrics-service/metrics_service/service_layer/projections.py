"""From the event log to the read models.

`record(session, envelope)` appends the event to the log (ON CONFLICT DO NOTHING on its id: a duplicate has
no effect) and `project(session, envelope, data)` applies it to the read models. Every projection is
order-independent: attributes are last-writer-wins on (subject_version, occurred_at, event_id) per source,
counters are added once per logged event, task status has a precedence (completed > skipped > open), and a
lead's timeline facts are recomputed from all of its timeline rows sorted by time.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.events import Envelope, EventData, utcnow
from salesflow_shared.events import catalogue as ev
from salesflow_shared.inbox import dialect_insert

from ..adapters.orm import (event_log, m_activities, m_leads, m_rep_daily, m_reps, m_stages, m_tasks,
                            m_timeline)
from ..domain import timeline
from ..domain.periods import date_ts, day_number, tiebreak, to_ts

FIRST_RESPONSE_KINDS = ("call", "email", "meeting")
PERSONAL_KEYS = ("contact", "company", "postcode", "custom_fields", "utm")


async def record(session: AsyncSession, envelope: Envelope) -> bool:
    """Append to the log; False when this event id is already there."""
    insert = dialect_insert(session)
    result = await session.execute(insert(event_log).values(
        event_id=str(envelope.id), org_id=envelope.org_id, event_type=envelope.type,
        event_version=envelope.version, producer=envelope.producer, subject_id=envelope.subject_id,
        subject_version=envelope.subject_version, occurred_at=envelope.occurred_at,
        correlation_id=envelope.correlation_id, causation_id=envelope.causation_id,
        data=envelope.data, recorded_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["event_id"]))
    return result.rowcount == 1


async def project(session: AsyncSession, envelope: Envelope, data: EventData, *,
                  recompute: bool = True) -> set[str]:
    """Apply one (new) event to the read models; returns the leads whose timeline facts need recomputing
    (already recomputed when `recompute` is true)."""
    handler = _PROJECTORS.get(envelope.type)
    if handler is None:
        return set()
    leads = await handler(session, envelope, data) or set()
    if recompute:
        for lead_id in leads:
            await recompute_lead(session, envelope.org_id, lead_id)
    return leads


# ------------------------------------------------------------------ upsert helpers
def _newer(table: sa.Table, ver: str | None, tb: str, excluded: Any) -> sa.ColumnElement[bool]:
    """True when the incoming row beats the stored one on (version, tiebreak)."""
    if ver is None:
        return excluded[tb] > table.c[tb]
    return sa.or_(excluded[ver] > table.c[ver],
                  sa.and_(excluded[ver] == table.c[ver], excluded[tb] > table.c[tb]))


def _pick(newer: sa.ColumnElement[bool], excluded: Any, column: sa.Column) -> sa.ColumnElement[Any]:
    return sa.case((newer, excluded[column.name]), else_=column)


async def _upsert_lww(session: AsyncSession, table: sa.Table, keys: dict[str, Any], values: dict[str, Any],
                      ver: str | None, tb: str, extra_set: dict[str, Any] | None = None) -> None:
    insert = dialect_insert(session)
    stmt = insert(table).values(**keys, **values)
    newer = _newer(table, ver, tb, stmt.excluded)
    lww_cols = [c for c in values if c not in keys]
    set_ = {c: _pick(newer, stmt.excluded, table.c[c]) for c in lww_cols}
    if extra_set:
        set_.update(extra_set(stmt.excluded, newer) if callable(extra_set) else extra_set)
    await session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=set_))


async def _ensure_lead(session: AsyncSession, org_id: str, lead_id: str) -> None:
    insert = dialect_insert(session)
    await session.execute(insert(m_leads).values(org_id=org_id, lead_id=lead_id)
                          .on_conflict_do_nothing(index_elements=["org_id", "lead_id"]))


async def _bump(session: AsyncSession, org_id: str, rep_id: str | None, ts: float, **counters: int) -> None:
    if not rep_id or not counters:
        return
    insert = dialect_insert(session)
    stmt = insert(m_rep_daily).values(org_id=org_id, rep_id=rep_id, day=day_number(ts), **counters)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["org_id", "rep_id", "day"],
        set_={c: m_rep_daily.c[c] + stmt.excluded[c] for c in counters}))


# ------------------------------------------------------------------ projectors, one per event type
async def _lead_snapshot(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    assert isinstance(data, (ev.LeadCreatedV1, ev.LeadUpdatedV1))
    lead = data.lead
    created = isinstance(data, ev.LeadCreatedV1)
    created_ts = to_ts(lead.created_at) or (to_ts(envelope.occurred_at) if created else None)
    values = {"snap_ver": envelope.subject_version, "snap_tb": tiebreak(envelope.occurred_at, str(envelope.id)),
              "product_line": lead.product_line, "source": lead.source, "value": lead.value,
              "currency": lead.currency, "expected_close_ts": date_ts(lead.expected_close_date)}

    def extra(excluded: Any, newer: Any) -> dict[str, Any]:
        return {"is_created": sa.or_(m_leads.c.is_created, excluded.is_created),
                # LeadCreated's creation time is authoritative; an update only fills a missing one
                "created_ts": (excluded.created_ts if created
                               else sa.func.coalesce(m_leads.c.created_ts, excluded.created_ts))}
    await _upsert_lww(session, m_leads, {"org_id": envelope.org_id, "lead_id": lead.lead_id},
                      {**values, "is_created": created, "created_ts": created_ts},
                      "snap_ver", "snap_tb", extra)
    ts = to_ts(envelope.occurred_at)
    assert ts is not None
    if created:
        await _bump(session, envelope.org_id, lead.owner_id, ts, records_entered=1)
    elif isinstance(data, ev.LeadUpdatedV1) and data.cause in (None, "edit"):
        await _bump(session, envelope.org_id, lead.owner_id, ts, records_updated=1)
    return set()


def _territory(excluded: Any, newer: Any, *, from_assignment: bool) -> dict[str, Any]:
    assigned = (sa.case((newer, excluded.assigned_territory_id), else_=m_leads.c.assigned_territory_id)
                if from_assignment else m_leads.c.assigned_territory_id)
    routed = (m_leads.c.routed_territory_id if from_assignment
              else sa.case((newer, excluded.routed_territory_id), else_=m_leads.c.routed_territory_id))
    return {"territory_id": sa.func.coalesce(assigned, routed)}


async def _lead_routed(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    assert isinstance(data, ev.LeadRoutedV1)
    await _upsert_lww(session, m_leads, {"org_id": envelope.org_id, "lead_id": data.lead_id},
                      {"route_ver": envelope.subject_version,
                       "route_tb": tiebreak(envelope.occurred_at, str(envelope.id)),
                       "routed_pipeline_id": data.pipeline_id, "routed_territory_id": data.territory_id,
                       "territory_id": data.territory_id},
                      "route_ver", "route_tb",
                      lambda excluded, newer: _territory(excluded, newer, from_assignment=False))
    return set()


async def _lead_assigned(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    assert isinstance(data, ev.LeadAssignedV1)
    tb = tiebreak(envelope.occurred_at, str(envelope.id))
    await _upsert_lww(session, m_leads, {"org_id": envelope.org_id, "lead_id": data.lead_id},
                      {"assign_ver": envelope.subject_version, "assign_tb": tb, "owner_id": data.owner_id,
                       "team_id": data.team_id, "assigned_territory_id": data.territory_id,
                       "territory_id": data.territory_id},
                      "assign_ver", "assign_tb",
                      lambda excluded, newer: _territory(excluded, newer, from_assignment=True))
    if data.owner_id:
        await _upsert_lww(session, m_reps, {"org_id": envelope.org_id, "rep_id": data.owner_id},
                          {"name": data.owner_name, "team_id": data.team_id, "tb": tb}, None, "tb")
    await _first_owner_activity(session, envelope.org_id, data.lead_id)
    return set()


async def _first_owner_activity(session: AsyncSession, org_id: str, lead_id: str) -> None:
    a = m_activities
    first = (sa.select(sa.func.min(a.c.occurred_ts))
             .where(a.c.org_id == m_leads.c.org_id, a.c.lead_id == m_leads.c.lead_id,
                    a.c.rep_id == m_leads.c.owner_id, a.c.kind.in_(FIRST_RESPONSE_KINDS))
             .scalar_subquery())
    await session.execute(sa.update(m_leads).where(m_leads.c.org_id == org_id, m_leads.c.lead_id == lead_id)
                          .values(first_owner_activity_ts=first))


async def _timeline_row(session: AsyncSession, envelope: Envelope, lead_id: str, kind: str, at: datetime,
                        **fields: Any) -> None:
    insert = dialect_insert(session)
    await session.execute(insert(m_timeline).values(
        event_id=str(envelope.id), org_id=envelope.org_id, lead_id=lead_id, kind=kind, at_ts=to_ts(at),
        rank=timeline.TIE_RANK[kind], **fields).on_conflict_do_nothing(index_elements=["event_id"]))


async def _stage_advanced(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    assert isinstance(data, ev.StageAdvancedV1)
    await _timeline_row(session, envelope, data.lead_id, "stage", data.entered_at, pipeline_id=data.pipeline_id,
                        stage_id=data.to_stage_id, position=data.to_stage_position, is_ask=data.is_ask_stage,
                        win_probability=probability(data.win_probability), reason=data.reason)
    await _upsert_lww(session, m_stages,
                      {"org_id": envelope.org_id, "pipeline_id": data.pipeline_id, "stage_id": data.to_stage_id},
                      {"name": data.to_stage_name, "position": data.to_stage_position,
                       "is_ask": data.is_ask_stage, "win_probability": probability(data.win_probability),
                       "tb": tiebreak(data.entered_at, str(envelope.id))}, None, "tb")
    return {data.lead_id}


def probability(value: Decimal | None) -> Decimal | None:
    """A stage's win probability as a fraction 0..1 (a value above 1 is read as a percentage)."""
    if value is None:
        return None
    return value / 100 if value > 1 else value


async def _outcome(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    if isinstance(data, ev.LeadWonV1):
        await _timeline_row(session, envelope, data.lead_id, "won", data.won_at, pipeline_id=data.pipeline_id,
                            stage_id=data.stage_id, value=data.value, currency=data.currency)
    elif isinstance(data, ev.LeadLostV1):
        await _timeline_row(session, envelope, data.lead_id, "lost", data.lost_at, pipeline_id=data.pipeline_id,
                            stage_id=data.stage_id, reason=data.reason[:40])
    elif isinstance(data, ev.LeadReopenedV1):
        await _timeline_row(session, envelope, data.lead_id, "reopened", data.reopened_at,
                            pipeline_id=data.pipeline_id)
    elif isinstance(data, ev.LeadDisqualifiedV1):
        await _timeline_row(session, envelope, data.lead_id, "disqualified", envelope.occurred_at,
                            reason=data.reason[:40])
    else:  # pragma: no cover - the projector map only routes these types here
        raise TypeError(type(data))
    return {data.lead_id}


async def _activity(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    assert isinstance(data, ev.ActivityLoggedV1)
    ts = to_ts(data.occurred_at)
    assert ts is not None
    insert = dialect_insert(session)
    result = await session.execute(insert(m_activities).values(
        org_id=envelope.org_id, activity_id=data.activity_id, lead_id=data.lead_id, rep_id=data.rep_id,
        kind=data.kind, source=data.source, occurred_ts=ts, duration_seconds=data.duration_seconds,
    ).on_conflict_do_nothing(index_elements=["org_id", "activity_id"]))
    if result.rowcount != 1:  # the same activity under another event id: count it once
        return set()
    counters: dict[str, int] = {
        "call": {"calls": 1, "talk_seconds": data.duration_seconds or 0},
        "email": {"emails_sequence" if data.source == "sequence" else "emails_logged": 1},
        "meeting": {"meetings": 1}, "demo": {"demos": 1}, "proposal": {"proposals": 1}, "note": {"notes": 1},
    }[data.kind]
    await _bump(session, envelope.org_id, data.rep_id, ts, **counters)
    if data.kind in FIRST_RESPONSE_KINDS and data.rep_id:
        await _first_owner_activity(session, envelope.org_id, data.lead_id)
    return set()


async def _task(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    values: dict[str, Any] = {"org_id": envelope.org_id, "task_id": data.task_id,  # type: ignore[attr-defined]
                              "lead_id": data.lead_id, "stage_id": data.stage_id,  # type: ignore[attr-defined]
                              "required": bool(getattr(data, "required", False)), "status": "open",
                              "overdue": False, "due_ts": to_ts(getattr(data, "due_at", None))}
    if isinstance(data, ev.TaskCompletedV1):
        values["status"] = "completed"
    elif isinstance(data, ev.TaskSkippedV1):
        values["status"] = "skipped"
    elif isinstance(data, ev.TaskOverdueV1):
        values["overdue"] = True
    insert = dialect_insert(session)
    stmt = insert(m_tasks).values(**values)
    x, t = stmt.excluded, m_tasks.c
    status = sa.case(
        (sa.or_(t.status == "completed", x.status == "completed"), "completed"),
        (sa.or_(t.status == "skipped", x.status == "skipped"), "skipped"), else_="open")
    await session.execute(stmt.on_conflict_do_update(index_elements=["org_id", "task_id"], set_={
        "lead_id": sa.func.coalesce(t.lead_id, x.lead_id), "stage_id": sa.func.coalesce(t.stage_id, x.stage_id),
        "required": sa.or_(t.required, x.required), "due_ts": sa.func.coalesce(x.due_ts, t.due_ts),
        "status": status, "overdue": sa.or_(t.overdue, x.overdue)}))
    return set()


async def _erased(session: AsyncSession, envelope: Envelope, data: EventData) -> set[str]:
    """Scrub personal data from this lead's logged snapshots (read models hold none)."""
    assert isinstance(data, ev.LeadErasedV1)
    rows = (await session.execute(sa.select(event_log.c.seq, event_log.c.data).where(
        event_log.c.org_id == envelope.org_id, event_log.c.subject_id == data.lead_id,
        event_log.c.event_type.in_(("LeadCreated", "LeadUpdated"))))).all()
    for seq, payload in rows:
        lead = dict(payload.get("lead") or {})
        for key in PERSONAL_KEYS:
            lead.pop(key, None)
        await session.execute(sa.update(event_log).where(event_log.c.seq == seq)
                              .values(data={**payload, "lead": lead}))
    return set()


_PROJECTORS = {
    "LeadCreated": _lead_snapshot, "LeadUpdated": _lead_snapshot, "LeadRouted": _lead_routed,
    "LeadAssigned": _lead_assigned, "StageAdvanced": _stage_advanced, "LeadWon": _outcome, "LeadLost": _outcome,
    "LeadReopened": _outcome, "LeadDisqualified": _outcome, "ActivityLogged": _activity,
    "TaskCreated": _task, "TaskCompleted": _task, "TaskSkipped": _task, "TaskOverdue": _task,
    "LeadErased": _erased,
}


# ------------------------------------------------------------------ per-lead recomputation
async def recompute_lead(session: AsyncSession, org_id: str, lead_id: str) -> None:
    """Recompute the successors of the lead's timeline rows and its timeline facts on m_leads."""
    t = m_timeline.c
    rows = [dict(r._mapping) for r in (await session.execute(
        sa.select(t.event_id, t.kind, t.at_ts, t.rank, t.pipeline_id, t.stage_id, t.position, t.is_ask,
                  t.win_probability, t.reason, t.value, t.currency, t.next_ts, t.next_kind, t.next_position,
                  t.next_reason)
        .where(t.org_id == org_id, t.lead_id == lead_id))).all()]
    succ = timeline.successors(rows)
    changed = [c for c in (_successor_change(r, succ[r["event_id"]]) for r in rows) if c]
    if changed:
        await session.execute(
            sa.update(m_timeline).where(m_timeline.c.event_id == sa.bindparam("b_event_id")).values(
                next_ts=sa.bindparam("b_next_ts"), next_kind=sa.bindparam("b_next_kind"),
                next_position=sa.bindparam("b_next_position"), next_reason=sa.bindparam("b_next_reason")),
            changed)
    facts = timeline.lead_facts(rows)
    insert = dialect_insert(session)
    stmt = insert(m_leads).values(org_id=org_id, lead_id=lead_id, **facts)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["org_id", "lead_id"], set_={k: stmt.excluded[k] for k in facts}))


def _successor_change(row: dict[str, Any], nxt: tuple[Any, Any, Any, Any]) -> dict[str, Any] | None:
    if (row["next_ts"], row["next_kind"], row["next_position"], row["next_reason"]) == nxt:
        return None
    return {"b_event_id": row["event_id"], "b_next_ts": nxt[0], "b_next_kind": nxt[1],
            "b_next_position": nxt[2], "b_next_reason": nxt[3]}

