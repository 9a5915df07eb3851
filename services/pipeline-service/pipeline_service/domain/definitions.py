"""Validating what admins send for pipelines, stages and task templates (pure; paths like
"stages[1].goal.all[0].field" so a 422 points at the wrong part)."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .due_dates import DueSpec, as_int, parse_due_spec
from .goals import validate_goal

TASK_TYPES = ("call", "email", "meeting", "demo", "todo")
# What counts as blank around names and titles: JSON Schema's (ECMAScript's) whitespace, so the documented
# pattern and this code agree on every string (Python's str.strip() also strips e.g. U+001C).
BLANK = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
        "\u2028\u2029\u202f\u205f\u3000\ufeff"
ASSIGNEE_KINDS = ("owner", "rep", "team")
MAX_STAGES = 30
MAX_TEMPLATES = 20


class DefinitionProblems(Exception):
    """`conflict`: the definition is well-formed but its stages clash with each other (names, ask stage)."""

    def __init__(self, problems: list[tuple[str, str]], *, conflict: bool = False) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems
        self.conflict = conflict


@dataclass(frozen=True)
class TaskTemplate:
    title: str
    type: str
    required: bool
    due: DueSpec
    assignee_kind: str = "owner"
    assignee_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        due: dict[str, Any] = {"amount": self.due.amount, "unit": self.due.unit}
        if self.due.at is not None:
            due["at"] = self.due.at.strftime("%H:%M")
        assignee: dict[str, Any] = {"kind": self.assignee_kind}
        if self.assignee_id:
            assignee["id"] = self.assignee_id
        return {"title": self.title, "type": self.type, "required": self.required, "due": due,
                "assignee": assignee}


@dataclass
class StageDef:
    name: str
    guidance: str = ""
    win_probability: Decimal = Decimal("0")
    is_ask_stage: bool = False
    goal: dict[str, Any] | None = None
    task_templates: list[TaskTemplate] = field(default_factory=list)


@dataclass
class PipelineDef:
    name: str
    description: str = ""
    lost_reasons: list[str] = field(default_factory=list)
    nurture_days: int = 90
    stages: list[StageDef] = field(default_factory=list)


def _text(raw: dict[str, Any], key: str, path: str, problems: list[tuple[str, str]], *, required: bool,
          max_len: int, default: str = "") -> str:
    value = raw.get(key, None)
    if value is None:
        if required:
            problems.append((f"{path}{key}", "is required"))
        return default
    if not isinstance(value, str) or (required and not value.strip(BLANK)) or len(value) > max_len:
        problems.append((f"{path}{key}",
                         f"must be a{' non-empty' if required else ''} string of at most {max_len} characters"))
        return default
    return value.strip(BLANK) if required else value


def _unknown(raw: dict[str, Any], allowed: set[str], path: str, problems: list[tuple[str, str]]) -> None:
    problems.extend((f"{path}{k}", "unknown field") for k in raw if k not in allowed)


def parse_task_template(raw: Any, path: str, problems: list[tuple[str, str]]) -> TaskTemplate | None:
    if not isinstance(raw, dict):
        problems.append((path.rstrip("."), "must be an object"))
        return None
    before = len(problems)
    _unknown(raw, {"title", "type", "required", "due", "assignee"}, path, problems)
    title = _text(raw, "title", path, problems, required=True, max_len=200)
    task_type = raw.get("type", "todo")
    if task_type not in TASK_TYPES:
        problems.append((f"{path}type", f"must be one of {', '.join(TASK_TYPES)}"))
    required = raw.get("required", False)
    if not isinstance(required, bool):
        problems.append((f"{path}required", "must be true or false"))
    spec, due_problems = parse_due_spec(raw.get("due", {"amount": 1, "unit": "business_days"}), f"{path}due")
    problems.extend(due_problems)
    assignee = raw.get("assignee", {"kind": "owner"})
    kind, assignee_id = "owner", None
    if not isinstance(assignee, dict):
        problems.append((f"{path}assignee", "must be an object like {\"kind\": \"owner\"}"))
    else:
        _unknown(assignee, {"kind", "id"}, f"{path}assignee.", problems)
        kind = assignee.get("kind", "owner")
        assignee_id = assignee.get("id")
        if kind not in ASSIGNEE_KINDS:
            problems.append((f"{path}assignee.kind", f"must be one of {', '.join(ASSIGNEE_KINDS)}"))
        elif kind == "owner" and assignee_id is not None:
            problems.append((f"{path}assignee.id", "not used with kind 'owner' (the lead owner)"))
        elif kind != "owner" and (not isinstance(assignee_id, str) or not assignee_id.strip(BLANK)
                                  or len(assignee_id) > 100):
            problems.append((f"{path}assignee.id", f"names the {kind} (required with kind '{kind}', "
                                                   "at most 100 characters)"))
    if len(problems) > before or spec is None:
        return None
    return TaskTemplate(title=title, type=task_type, required=required, due=spec, assignee_kind=kind,
                        assignee_id=assignee_id)


def parse_stage(raw: Any, path: str, problems: list[tuple[str, str]], *, partial: bool = False) -> StageDef | None:
    """`path` ends with "." (e.g. "stages[1]."); `partial` accepts a subset of fields (PATCH)."""
    if not isinstance(raw, dict):
        problems.append((path.rstrip("."), "must be an object"))
        return None
    before = len(problems)
    _unknown(raw, {"name", "guidance", "win_probability", "is_ask_stage", "goal", "task_templates"}, path, problems)
    stage = StageDef(name=_text(raw, "name", path, problems, required=not partial or "name" in raw, max_len=120))
    stage.guidance = _text(raw, "guidance", path, problems, required=False, max_len=20_000)
    if "win_probability" in raw:
        stage.win_probability = _probability(raw["win_probability"], f"{path}win_probability", problems)
    ask = raw.get("is_ask_stage", False)
    if not isinstance(ask, bool):
        problems.append((f"{path}is_ask_stage", "must be true or false"))
    stage.is_ask_stage = ask is True
    stage.goal = raw.get("goal")
    problems.extend((p.path, p.message) for p in validate_goal(stage.goal, f"{path}goal"))
    templates = raw.get("task_templates", [])
    if not isinstance(templates, list) or len(templates) > MAX_TEMPLATES:
        problems.append((f"{path}task_templates", f"must be a list of at most {MAX_TEMPLATES} task templates"))
    else:
        for i, t in enumerate(templates):
            parsed = parse_task_template(t, f"{path}task_templates[{i}].", problems)
            if parsed is not None:
                stage.task_templates.append(parsed)
    return stage if len(problems) == before else None


def _probability(value: Any, path: str, problems: list[tuple[str, str]]) -> Decimal:
    try:
        if isinstance(value, bool) or value is None:
            raise InvalidOperation
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        problems.append((path, "must be a number from 0 to 1"))
        return Decimal("0")
    if not number.is_finite() or not Decimal("0") <= number <= Decimal("1"):
        problems.append((path, "must be a number from 0 to 1"))
        return Decimal("0")
    return number


def parse_pipeline(raw: Any) -> PipelineDef:
    """A full pipeline definition (POST); raises DefinitionProblems listing every problem."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise DefinitionProblems([("body", "must be a JSON object")])
    _unknown(raw, {"name", "description", "lost_reasons", "nurture_days", "stages"}, "", problems)
    definition = PipelineDef(name=_text(raw, "name", "", problems, required=True, max_len=120))
    definition.description = _text(raw, "description", "", problems, required=False, max_len=5000)
    definition.lost_reasons = parse_lost_reasons(raw.get("lost_reasons", []), problems)
    definition.nurture_days = parse_nurture_days(raw.get("nurture_days", 90), problems)
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages or len(stages) > MAX_STAGES:
        problems.append(("stages", f"must be a list of 1 to {MAX_STAGES} stages"))
    else:
        for i, s in enumerate(stages):
            parsed = parse_stage(s, f"stages[{i}].", problems)
            if parsed is not None:
                definition.stages.append(parsed)
    if problems:
        raise DefinitionProblems(problems)
    clashes: list[tuple[str, str]] = []
    names = [s.name.lower() for s in definition.stages]
    for i, name in enumerate(names):
        if names.index(name) != i:
            clashes.append((f"stages[{i}].name", "two stages of a pipeline cannot share a name"))
    asks = [i for i, s in enumerate(definition.stages) if s.is_ask_stage]
    if len(asks) > 1:
        clashes.append((f"stages[{asks[1]}].is_ask_stage", "a pipeline has at most one ask stage"))
    if clashes:
        raise DefinitionProblems(clashes, conflict=True)
    return definition


def parse_lost_reasons(value: Any, problems: list[tuple[str, str]]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip(BLANK) and len(v) <= 100 for v in value):
        problems.append(("lost_reasons", "must be a list of non-empty strings (at most 100 characters each)"))
        return []
    return list(dict.fromkeys(v.strip(BLANK) for v in value))


def parse_nurture_days(value: Any, problems: list[tuple[str, str]]) -> int:
    days = as_int(value)
    if days is None or not 1 <= days <= 3650:
        problems.append(("nurture_days", "must be an integer from 1 to 3650"))
        return 90
    return days
