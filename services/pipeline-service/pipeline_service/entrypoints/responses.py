"""What pipeline-service answers, as models for the OpenAPI document (routes build the JSON; contract tests
check it). Times are RFC 3339 with an offset; probabilities and money are decimal strings."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from salesflow_shared.contract import MONEY_PATTERN, page_of

DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?(E[-+]?[0-9]+)?$"


class TaskTemplateOut(BaseModel):
    title: str
    type: str
    required: bool
    due: dict[str, Any] = Field(json_schema_extra={"description": "{amount, unit[, at]}"})
    assignee: dict[str, Any] = Field(json_schema_extra={"description": "{kind[, id]}"})


class StageOut(BaseModel):
    id: str
    name: str
    position: int
    guidance: str | None
    win_probability: str = Field(json_schema_extra={"pattern": DECIMAL_PATTERN})
    is_ask_stage: bool
    goal: dict[str, Any] | None
    task_templates: list[TaskTemplateOut]


class PipelineOut(BaseModel):
    """A pipeline with its ordered stages; `version` is its ETag."""

    id: str
    name: str
    description: str | None
    lost_reasons: list[str]
    nurture_days: int | None
    template_key: str | None
    version: int
    outcomes: list[str]
    stages: list[StageOut]
    created_at: datetime
    updated_at: datetime


class StageDeleted(BaseModel):
    leads_moved: int
    pipeline: PipelineOut


class PipelineTemplateOut(BaseModel):
    key: str
    name: str
    description: str
    stages: list[str]


class PositionSummary(BaseModel):
    """A lead's place on the board."""

    lead_id: str
    status: str
    pipeline_id: str | None
    stage_id: str | None
    stage_entered_at: datetime | None
    owner_id: str | None
    team_id: str | None
    reengage_at: datetime | None


class TaskOut(BaseModel):
    id: str
    lead_id: str
    pipeline_id: str | None
    stage_id: str | None
    title: str
    type: str
    required: bool
    status: str
    assignee_kind: str | None
    assignee_id: str | None
    team_id: str | None
    due_at: datetime | None
    overdue: bool
    created_at: datetime
    completed_at: datetime | None
    completed_by: str | None
    skip_reason: str | None


class PipelineRef(BaseModel):
    pipeline_id: str
    name: str


class CurrentStage(BaseModel):
    stage_id: str
    name: str
    position: int
    guidance: str | None
    win_probability: str = Field(json_schema_extra={"pattern": DECIMAL_PATTERN})
    is_ask_stage: bool
    goal: dict[str, Any] | None
    entered_at: datetime | None


class StageVisit(BaseModel):
    stage_id: str
    stage_name: str | None
    pipeline_id: str | None
    entered_at: datetime | None
    exited_at: datetime | None
    entry_reason: str | None
    exit_reason: str | None
    triggering_event_id: str | None
    moved_by: str | None
    note: str | None
    seconds_in_stage: float | None


class Outcome(BaseModel):
    lost_reason: str | None
    reengage_at: datetime | None
    won_value: str | None = Field(json_schema_extra={"pattern": MONEY_PATTERN})
    won_currency: str | None
    closed_at: datetime | None


class PositionOut(BaseModel):
    """Where a lead stands: its pipeline and stage (with guidance), open tasks, stage history and outcome."""

    lead_id: str
    status: str
    owner_id: str | None
    team_id: str | None
    pipeline: PipelineRef | None
    stage: CurrentStage | None
    open_tasks: list[TaskOut]
    history: list[StageVisit]
    outcome: Outcome


PipelinePage = page_of(PipelineOut)
PipelineTemplatePage = page_of(PipelineTemplateOut)
PositionSummaryPage = page_of(PositionSummary)
TaskPage = page_of(TaskOut)
