"""Read models for the API: a lead's position (stage, guidance, open tasks, history) and task lists."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from salesflow_shared.auth import Principal
from salesflow_shared.errors import Forbidden, NotFound
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.repository import Position, TaskRecord
from .engine import aware


def _iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat() if value is not None else None


def task_json(row: TaskRecord, now: datetime) -> dict[str, Any]:
    due = aware(row.due_at)
    return {"id": row.id, "lead_id": row.lead_id, "pipeline_id": row.pipeline_id, "stage_id": row.stage_id,
            "title": row.title, "type": row.task_type, "required": row.required, "status": row.status,
            "assignee_kind": row.assignee_kind, "assignee_id": row.assignee_id, "team_id": row.team_id,
            "due_at": _iso(due), "overdue": row.status == "open" and due is not None and due < now,
            "created_at": _iso(row.created_at), "completed_at": _iso(row.completed_at),
            "completed_by": row.completed_by, "skip_reason": row.skip_reason}


async def load_visible_position(uow: UnitOfWork, principal: Principal, lead_id: str, *,
                                to_change: bool = False) -> Position:
    """404 for other orgs' leads and leads the rep never owned; with `to_change`, 403 for a lead the rep
    owned before (read-only for it)."""
    pos = await repository.visible_position(uow.session, principal, lead_id)
    if pos is None or pos.status == "erased":
        raise NotFound(f"no position for lead {lead_id}")
    if to_change and not principal.sees_whole_org and pos.owner_id != principal.user_id:
        raise Forbidden(f"lead {lead_id} is read-only for you: you no longer own it")
    return pos


async def position_json(uow: UnitOfWork, principal: Principal, lead_id: str, now: datetime) -> dict[str, Any]:
    view = await repository.position_view(uow.session, principal, lead_id)
    if view is None or view.position.status == "erased":
        raise NotFound(f"no position for lead {lead_id}")
    pos, stage, open_tasks, history = view.position, view.stage, view.open_tasks, view.history
    return {
        "lead_id": pos.lead_id, "status": pos.status, "owner_id": pos.owner_id, "team_id": pos.team_id,
        "pipeline": {"pipeline_id": pos.pipeline_id, "name": view.pipeline_name}
        if view.pipeline_name is not None else None,
        "stage": None if stage is None else {
            "stage_id": stage.id, "name": stage.name, "position": stage.position, "guidance": stage.guidance,
            "win_probability": str(Decimal(stage.win_probability).normalize()), "is_ask_stage": stage.is_ask_stage,
            "goal": stage.goal, "entered_at": _iso(pos.stage_entered_at)},
        "open_tasks": [task_json(t, now) for t in open_tasks],
        "history": [{"stage_id": h.stage_id, "stage_name": h.stage_name, "pipeline_id": h.pipeline_id,
                     "entered_at": _iso(h.entered_at), "exited_at": _iso(h.exited_at),
                     "entry_reason": h.entry_reason, "exit_reason": h.exit_reason,
                     "triggering_event_id": h.triggering_event_id, "moved_by": h.moved_by, "note": h.note,
                     "seconds_in_stage": (aware(h.exited_at) - aware(h.entered_at)).total_seconds()
                     if h.exited_at else None}
                    for h in history],
        "outcome": {"lost_reason": pos.lost_reason, "reengage_at": _iso(pos.reengage_at),
                    "won_value": str(pos.won_value) if pos.won_value is not None else None,
                    "won_currency": pos.won_currency, "closed_at": _iso(pos.closed_at)},
    }
