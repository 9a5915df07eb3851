"""Where a lead stands in its pipeline and which moves are allowed from there (pure rules, no I/O).

Statuses: `active` (in a stage), `won`, `nurturing` (lost, waiting for its re-engage date), `disqualified`
(removed from its pipeline), `erased`; `unrouted` is a lead known from lead events but not yet routed.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, TypeVar

Status = Literal["unrouted", "active", "won", "nurturing", "disqualified", "erased"]
Action = Literal["enter", "move", "advance", "win", "lose", "reopen", "disqualify", "erase"]

ALLOWED: dict[Action, tuple[Status, ...]] = {
    # A new routing may put a lead in (another) pipeline unless it is closed for good.
    "enter": ("unrouted", "active"),
    "move": ("active",),
    "advance": ("active",),
    "win": ("active",),
    "lose": ("active",),
    "reopen": ("nurturing",),
    "disqualify": ("unrouted", "active", "won", "nurturing"),
    "erase": ("unrouted", "active", "won", "nurturing", "disqualified"),
}
NEXT_STATUS: dict[Action, Status] = {
    "enter": "active", "move": "active", "advance": "active", "win": "won", "lose": "nurturing",
    "reopen": "active", "disqualify": "disqualified", "erase": "erased",
}


class TransitionRefused(Exception):
    def __init__(self, action: Action, status: str) -> None:
        super().__init__(f"cannot {action} a lead whose position is {status}")
        self.action = action
        self.status = status


def can(action: Action, status: str) -> bool:
    return status in ALLOWED[action]


def transition(action: Action, status: str) -> Status:
    """The status after `action`, or TransitionRefused."""
    if not can(action, status):
        raise TransitionRefused(action, status)
    return NEXT_STATUS[action]


class _Stage(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def position(self) -> int: ...


S = TypeVar("S", bound=_Stage)


def ordered(stages: Sequence[S]) -> list[S]:
    return sorted(stages, key=lambda s: s.position)


def next_stage(stages: Sequence[S], current_id: str | None) -> S | None:
    """The stage after `current_id` in order; None at the last stage (decisions are closed as won/lost)."""
    seq = ordered(stages)
    for i, stage in enumerate(seq):
        if stage.id == current_id:
            return seq[i + 1] if i + 1 < len(seq) else None
    return None


def first_stage(stages: Sequence[S]) -> S | None:
    seq = ordered(stages)
    return seq[0] if seq else None


def reorder(current_ids: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Validate a new stage order: it must name every current stage exactly once."""
    if len(wanted) != len(set(wanted)):
        raise ValueError("stage_ids names a stage twice")
    if set(wanted) != set(current_ids):
        missing = [s for s in current_ids if s not in wanted]
        extra = [s for s in wanted if s not in current_ids]
        raise ValueError(f"stage_ids must list every stage of the pipeline exactly once"
                         f" (missing: {missing}, unknown: {extra})")
    return list(wanted)


@dataclass(frozen=True)
class NurturePlan:
    reengage_at: datetime


def plan_nurture(now: datetime, requested: datetime | None, default_days: int) -> NurturePlan:
    """When a lost lead comes back: the requested date (which must be in the future) or the default."""
    if requested is not None:
        if requested.tzinfo is None:
            raise ValueError("reengage_at must carry a time zone (RFC 3339)")
        if requested <= now:
            raise ValueError("reengage_at must be in the future")
        return NurturePlan(requested)
    return NurturePlan(now + timedelta(days=default_days))


def is_due(reengage_at: datetime | None, now: datetime) -> bool:
    return reengage_at is not None and reengage_at <= now
