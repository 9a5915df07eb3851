"""Sequences: what starts one, when each step is due and what stops it. Pure code, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from .timing import BusinessHours, step_due_at

Trigger = Literal["stage_entry", "lead_created", "lead_lost", "lead_won"]
TRIGGERS: tuple[str, ...] = ("stage_entry", "lead_created", "lead_lost", "lead_won")
# Lifecycle facts that may stop a running enrollment.
StopFact = Literal["stage_entered", "disqualified", "erased", "unsubscribed", "won", "lost", "reopened"]


@dataclass(frozen=True)
class Step:
    template_id: str
    delay: timedelta
    business_hours: bool = False


@dataclass(frozen=True)
class SequenceSpec:
    trigger: Trigger
    steps: tuple[Step, ...]
    pipeline_id: str | None = None
    stage_id: str | None = None
    source: str | None = None  # lead_created: only leads from this source ("web_form" = any form)


def matches_stage_entry(spec: SequenceSpec, pipeline_id: str, stage_id: str) -> bool:
    return (spec.trigger == "stage_entry" and spec.stage_id == stage_id
            and (spec.pipeline_id is None or spec.pipeline_id == pipeline_id))


def matches_lead_created(spec: SequenceSpec, source: str | None, form_id: str | None) -> bool:
    if spec.trigger != "lead_created":
        return False
    if spec.source is None:
        return True
    if spec.source == "web_form" and form_id:
        return True
    return spec.source == source


def matches_outcome(spec: SequenceSpec, trigger: Trigger, pipeline_id: str | None) -> bool:
    return spec.trigger == trigger and (spec.pipeline_id is None or spec.pipeline_id == pipeline_id)


def stop_reason(trigger: str, enrolled_stage_id: str | None, fact: StopFact,
                stage_id: str | None = None) -> str | None:
    """Why an enrollment of a sequence with `trigger` stops on `fact`, or None if it goes on."""
    if fact in ("disqualified", "erased", "unsubscribed"):
        return fact
    if fact == "stage_entered":
        if trigger == "stage_entry" and enrolled_stage_id != stage_id:
            return "left_stage"
        return None
    if fact == "won":
        return None if trigger == "lead_won" else "won"
    if fact == "lost":
        return None if trigger == "lead_lost" else "lost"
    if fact == "reopened":
        return "reopened" if trigger == "lead_lost" else None
    return None


@dataclass(frozen=True)
class LeadState:
    status: str | None
    stage_id: str | None
    unsubscribed: bool
    erased: bool


def still_eligible(trigger: str, enrolled_stage_id: str | None, lead: LeadState) -> str | None:
    """Checked again just before a step is sent (events may have arrived out of order): a stop reason or None."""
    if lead.erased:
        return "erased"
    if lead.unsubscribed:
        return "unsubscribed"
    if lead.status == "disqualified":
        return "disqualified"
    if trigger == "stage_entry":
        if lead.status in ("won", "lost"):
            return lead.status
        if lead.stage_id != enrolled_stage_id:
            return "left_stage"
    if trigger == "lead_created" and lead.status in ("won", "lost"):
        return lead.status
    if trigger == "lead_lost" and lead.status not in ("lost", "nurturing"):
        return "reopened" if lead.status in ("open", "qualified") else lead.status
    return None


def next_due(previous: datetime, step: Step, *, lead_timezone: str | None, hours: BusinessHours,
             fallback_timezone: str) -> datetime:
    return step_due_at(previous, step.delay, business_hours=hours if step.business_hours else None,
                       timezone=lead_timezone, fallback_timezone=fallback_timezone)
