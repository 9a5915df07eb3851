"""JSON Schemas of the pipeline admin bodies, for the OpenAPI document.

The bodies are validated by the domain code (so a 422 names e.g. "stages[1].goal.all[0].field"); these
schemas describe the same rules for clients and generators, built from the same constants. Goals may nest
deeper than documented here (up to the domain's limit); the schema unrolls a few levels to stay free of
recursive references.
"""
from __future__ import annotations

from typing import Any

from ..domain.definitions import ASSIGNEE_KINDS, BLANK, MAX_STAGES, MAX_TEMPLATES, TASK_TYPES
from ..domain.due_dates import MAX_AMOUNT
from ..domain.goals import ACTIVITY_KINDS, LEAD_FIELDS, ORDERING_OPS, VALUELESS_OPS

# One character that is neither blank (the domain's BLANK, JSON Schema's \s) nor NUL (dropped before validation).
NON_BLANK = "[^" + "".join(f"\\u{ord(c):04x}" for c in BLANK + "\x00") + "]"


def _text(max_length: int, *, non_blank: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if non_blank:
        schema.update(minLength=1, pattern=NON_BLANK)
    return schema


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


FIELD_NAME = {"anyOf": [{"type": "string", "enum": list(LEAD_FIELDS)},
                        {"type": "string", "pattern": r"^(custom|utm)\..+"}]}


def _leaves() -> list[dict[str, Any]]:
    return [
        _object({"field": FIELD_NAME, "op": {"type": "string", "enum": list(VALUELESS_OPS)}}, ["field", "op"]),
        _object({"field": FIELD_NAME, "op": {"type": "string", "enum": ["eq", "ne", "contains"]},
                 "value": {"type": ["string", "number", "boolean", "null"]}}, ["field", "op", "value"]),
        _object({"field": FIELD_NAME, "op": {"type": "string", "enum": ["in"]},
                 "value": {"type": "array", "minItems": 1, "items": {"type": ["string", "number", "boolean"]}}},
                ["field", "op", "value"]),
        _object({"field": FIELD_NAME, "op": {"type": "string", "enum": list(ORDERING_OPS)},
                 "value": {"type": "number"}}, ["field", "op", "value"]),
        _object({"contact_complete": {"type": "boolean", "enum": [True]}}, ["contact_complete"]),
        _object({"activity": {"type": "string", "enum": list(ACTIVITY_KINDS)},
                 "min_count": {"type": "integer", "minimum": 1},
                 "since": {"type": "string", "enum": ["ever", "stage_entry"]}}, ["activity"]),
        _object({"tasks": {"type": "string", "enum": ["required_done"]}}, ["tasks"]),
    ]


def goal_schema(levels: int = 3) -> dict[str, Any]:
    """A goal: a leaf condition or all/any of goals (documented `levels` deep)."""
    options = _leaves()
    if levels > 1:
        child = goal_schema(levels - 1)
        options += [_object({"all": {"type": "array", "minItems": 1, "maxItems": 10, "items": child}}, ["all"]),
                    _object({"any": {"type": "array", "minItems": 1, "maxItems": 10, "items": child}}, ["any"])]
    return {"anyOf": options}


DUE = {"anyOf": [
    _object({"amount": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT},
             "unit": {"type": "string", "enum": ["hours"]}}, ["amount", "unit"]),
    _object({"amount": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT},
             "unit": {"type": "string", "enum": ["days", "business_days"]},
             "at": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                    "description": "local time of day, e.g. 17:00"}}, ["amount", "unit"]),
]}

ASSIGNEE = {"anyOf": [
    _object({"kind": {"type": "string", "enum": ["owner"]}}, ["kind"]),
    _object({"kind": {"type": "string", "enum": [k for k in ASSIGNEE_KINDS if k != "owner"]},
             "id": _text(100)}, ["kind", "id"]),
]}

TASK_TEMPLATE = _object({
    "title": _text(200), "type": {"type": "string", "enum": list(TASK_TYPES)}, "required": {"type": "boolean"},
    "due": DUE, "assignee": ASSIGNEE,
}, ["title"])


def stage_properties() -> dict[str, Any]:
    return {
        "name": _text(120), "guidance": {**_text(20_000, non_blank=False), "description": "markdown"},
        "win_probability": {"type": "number", "minimum": 0, "maximum": 1},
        "is_ask_stage": {"type": "boolean"},
        "goal": {"anyOf": [{"type": "null"}, goal_schema()]},
        "task_templates": {"type": "array", "maxItems": MAX_TEMPLATES, "items": TASK_TEMPLATE},
    }


STAGE = _object(stage_properties(), ["name"])
NEW_STAGE = _object({**stage_properties(), "position": {"type": "integer", "minimum": 1,
                                                         "description": "1-based; default and beyond: last"}},
                    ["name"])
STAGE_PATCH = _object(stage_properties())
LOST_REASONS = {"type": "array", "items": _text(100)}
NURTURE_DAYS = {"type": "integer", "minimum": 1, "maximum": 3650}
PIPELINE = _object({
    "name": _text(120), "description": _text(5000, non_blank=False), "lost_reasons": LOST_REASONS,
    "nurture_days": NURTURE_DAYS, "stages": {"type": "array", "minItems": 1, "maxItems": MAX_STAGES, "items": STAGE},
}, ["name", "stages"])
PIPELINE_PATCH = _object({"name": _text(120), "description": {"type": "string"}, "lost_reasons": LOST_REASONS,
                          "nurture_days": NURTURE_DAYS})


def body(schema: dict[str, Any], example: dict[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body validated by the domain code."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": content}}}
