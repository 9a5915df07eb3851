"""Stage goals (exit criteria): a declarative all/any tree, validated once and evaluated as pure code.

A goal is JSON an admin writes on a stage. Nodes:
- `{"all": [node, ...]}` / `{"any": [node, ...]}`: every / at least one child holds (non-empty lists);
- `{"field": "value", "op": "gt", "value": 10000}`: a lead field; ops `set`, `not_set`, `eq`, `ne`, `gt`,
  `gte`, `lt`, `lte`, `in`, `contains`; fields are the LeadSnapshot ones ("value", "score", "contact.email",
  "company.industry", ...), `custom.<name>` (custom fields) and `utm.<name>`;
- `{"contact_complete": true}`: the contact has a first and last name, an email and a phone;
- `{"activity": "meeting", "min_count": 1, "since": "stage_entry"}`: at least N activities of that kind
  (call, email, meeting, demo, proposal, note) ever (`"since": "ever"`, the default: everything known of
  the lead, or since its reopening when a nurtured lead came back) or since it entered the current stage;
- `{"tasks": "required_done"}`: every required task created on entering the current stage is done (true
  when the stage created none).

`validate_goal` returns every problem with its path (e.g. "stages[1].goal.all[0].field"), so the API can
answer 422 pointing at the wrong part. `evaluate_goal` needs the facts pipeline-service knows of the lead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .due_dates import as_int

ACTIVITY_KINDS = ("call", "email", "meeting", "demo", "proposal", "note")
FIELD_OPS = ("set", "not_set", "eq", "ne", "gt", "gte", "lt", "lte", "in", "contains")
VALUELESS_OPS = ("set", "not_set")
ORDERING_OPS = ("gt", "gte", "lt", "lte")
LEAD_FIELDS = (
    "value", "currency", "country", "region", "postcode", "timezone", "language", "product_line",
    "expected_close_date", "source", "status", "owner_id", "team_id", "score", "form_id",
    "contact.first_name", "contact.last_name", "contact.email", "contact.phone", "contact.title",
    "company.name", "company.domain", "company.size", "company.industry",
)
DYNAMIC_PREFIXES = ("custom.", "utm.")
NODE_KINDS = ("all", "any", "field", "contact_complete", "activity", "tasks")
MAX_DEPTH = 8


@dataclass(frozen=True)
class GoalProblem:
    path: str
    message: str


@dataclass
class LeadFacts:
    """What pipeline-service knows of a lead when a goal is evaluated."""

    fields: dict[str, Any] = field(default_factory=dict)  # a LeadSnapshot as a JSON dict (may be empty)
    activities_ever: dict[str, int] = field(default_factory=dict)
    activities_in_stage: dict[str, int] = field(default_factory=dict)
    required_tasks_total: int = 0
    required_tasks_done: int = 0


def validate_goal(goal: Any, path: str = "goal") -> list[GoalProblem]:
    """Every problem in a goal definition (None means "no goal": the stage is left by hand only)."""
    if goal is None:
        return []
    return _validate(goal, path, 0)


def _validate(node: Any, path: str, depth: int) -> list[GoalProblem]:
    if depth > MAX_DEPTH:
        return [GoalProblem(path, f"goals may nest at most {MAX_DEPTH} levels deep")]
    if not isinstance(node, dict):
        return [GoalProblem(path, "must be an object such as {\"all\": [...]} or {\"field\": ..., \"op\": ...}")]
    kinds = [k for k in NODE_KINDS if k in node]
    if len(kinds) != 1:
        return [GoalProblem(path, f"must have exactly one of {', '.join(NODE_KINDS)}")]
    kind = kinds[0]
    allowed = {"all": {"all"}, "any": {"any"}, "field": {"field", "op", "value"},
               "contact_complete": {"contact_complete"}, "activity": {"activity", "min_count", "since"},
               "tasks": {"tasks"}}[kind]
    problems = [GoalProblem(f"{path}.{k}", "unknown key") for k in node if k not in allowed]
    if kind in ("all", "any"):
        children = node[kind]
        if not isinstance(children, list) or not children:
            return problems + [GoalProblem(f"{path}.{kind}", "must be a non-empty list of conditions")]
        for i, child in enumerate(children):
            problems += _validate(child, f"{path}.{kind}[{i}]", depth + 1)
    elif kind == "field":
        problems += _validate_field(node, path)
    elif kind == "contact_complete":
        if node["contact_complete"] is not True:
            problems.append(GoalProblem(f"{path}.contact_complete", "must be true"))
    elif kind == "activity":
        if node["activity"] not in ACTIVITY_KINDS:
            problems.append(GoalProblem(f"{path}.activity", f"must be one of {', '.join(ACTIVITY_KINDS)}"))
        count = as_int(node.get("min_count", 1))
        if count is None or count < 1:
            problems.append(GoalProblem(f"{path}.min_count", "must be an integer of at least 1"))
        if node.get("since", "ever") not in ("ever", "stage_entry"):
            problems.append(GoalProblem(f"{path}.since", "must be 'ever' or 'stage_entry'"))
    elif kind == "tasks":
        if node["tasks"] != "required_done":
            problems.append(GoalProblem(f"{path}.tasks", "must be 'required_done'"))
    return problems


def _validate_field(node: dict[str, Any], path: str) -> list[GoalProblem]:
    name = node["field"]
    problems: list[GoalProblem] = []
    if not isinstance(name, str) or not (
            name in LEAD_FIELDS or any(name.startswith(p) and len(name) > len(p) for p in DYNAMIC_PREFIXES)):
        problems.append(GoalProblem(f"{path}.field", "unknown lead field (use a LeadSnapshot field, "
                                                     "custom.<name> or utm.<name>)"))
    op = node.get("op")
    if op not in FIELD_OPS:
        return problems + [GoalProblem(f"{path}.op", f"must be one of {', '.join(FIELD_OPS)}")]
    if op in VALUELESS_OPS:
        if "value" in node:
            problems.append(GoalProblem(f"{path}.value", f"not used with op '{op}'"))
        return problems
    if "value" not in node:
        return problems + [GoalProblem(f"{path}.value", f"required with op '{op}'")]
    value = node["value"]
    if not _finite(value):
        return problems + [GoalProblem(f"{path}.value", "numbers must be finite")]
    if op == "in":
        if not isinstance(value, list) or not value:
            problems.append(GoalProblem(f"{path}.value", "must be a non-empty list with op 'in'"))
    elif op in ORDERING_OPS:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or _as_decimal(value) is not None
                                           or _as_date(value) is not None):
            problems.append(GoalProblem(f"{path}.value", f"must be a number or a date with op '{op}'"))
    elif isinstance(value, (dict, list)):
        problems.append(GoalProblem(f"{path}.value", "must be a single value"))
    return problems


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def evaluate_goal(goal: Any, facts: LeadFacts) -> bool:
    """Whether a (validated) goal holds; a stage without a goal never advances by itself."""
    if goal is None:
        return False
    return _holds(goal, facts)


def facts_needed(goal: Any) -> set[str]:
    """Which of the facts read from the database a (valid) goal looks at: "activities", "tasks" (the lead's fields
    come with its position). No goal needs none, and what a goal never looks at need not be read."""
    if not isinstance(goal, dict):
        return set()
    if "all" in goal or "any" in goal:
        return set().union(*(facts_needed(child) for child in goal.get("all") or goal.get("any") or []))
    return {facts for node_kind, facts in (("activity", "activities"), ("tasks", "tasks")) if node_kind in goal}


def _holds(node: dict[str, Any], facts: LeadFacts) -> bool:
    if "all" in node:
        return all(_holds(child, facts) for child in node["all"])
    if "any" in node:
        return any(_holds(child, facts) for child in node["any"])
    if "field" in node:
        return _field_holds(lookup_field(facts.fields, node["field"]), node["op"], node.get("value"))
    if "contact_complete" in node:
        contact = facts.fields.get("contact") or {}
        return all(_is_set(contact.get(k)) for k in ("first_name", "last_name", "email", "phone"))
    if "activity" in node:
        counts = facts.activities_in_stage if node.get("since") == "stage_entry" else facts.activities_ever
        return bool(counts.get(node["activity"], 0) >= node.get("min_count", 1))
    if "tasks" in node:
        return facts.required_tasks_done >= facts.required_tasks_total
    return False


def lookup_field(fields: dict[str, Any], name: str) -> Any:
    if name.startswith("custom."):
        return (fields.get("custom_fields") or {}).get(name[len("custom."):])
    if name.startswith("utm."):
        return (fields.get("utm") or {}).get(name[len("utm."):])
    value: Any = fields
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _is_set(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _field_holds(actual: Any, op: str, expected: Any) -> bool:
    if op == "set":
        return _is_set(actual)
    if op == "not_set":
        return not _is_set(actual)
    if not _is_set(actual):
        return False  # an unknown value satisfies no comparison (not even "ne")
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, e) for e in expected)
    if op == "contains":
        if isinstance(actual, list):
            return any(_equal(a, expected) for a in actual)
        return isinstance(actual, str) and str(expected).lower() in actual.lower()
    left, right = _comparable(actual, expected)
    if left is None or right is None:
        return False
    return bool({"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op])


def _equal(actual: Any, expected: Any) -> bool:
    left, right = _as_decimal(actual), _as_decimal(expected)
    if left is not None and right is not None and not isinstance(actual, bool) and not isinstance(expected, bool):
        return left == right
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.strip().lower() == expected.strip().lower()
    return bool(actual == expected)


def _comparable(actual: Any, expected: Any) -> tuple[Any, Any]:
    left_n, right_n = _as_decimal(actual), _as_decimal(expected)
    if left_n is not None and right_n is not None:
        return left_n, right_n
    return _as_date(actual), _as_date(expected)


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        number = Decimal(str(value))
        return number if number.is_finite() else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None
