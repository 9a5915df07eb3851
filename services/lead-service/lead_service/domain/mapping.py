"""Turning a submitted payload (web form, webhook, CSV row) into a validated lead, with field-named errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .custom_fields import CustomFieldDef, coerce_custom_fields
from .lead import LeadIn, error_field, is_valid_target, set_path

MAX_VALUE_LENGTH = 5000


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


@dataclass(frozen=True)
class FormSpec:
    """How a form's (or an import's) incoming names become lead fields."""

    mapping: dict[str, str] = field(default_factory=dict)  # incoming name -> lead field path
    defaults: dict[str, Any] = field(default_factory=dict)  # lead field path -> value when absent
    required: tuple[str, ...] = ()  # lead field paths that must be present
    ignored: tuple[str, ...] = ()  # incoming names that are not lead data (honeypot, public key)


@dataclass
class MappingResult:
    lead: LeadIn | None
    errors: list[FieldProblem]
    unmapped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lead is not None and not self.errors


def validate_spec(mapping: dict[str, str], defaults: dict[str, Any], required: list[str]) -> list[FieldProblem]:
    """Problems in a form definition, each naming the offending field of the definition."""
    problems = [FieldProblem(f"mapping.{name}", f"unknown lead field {target!r}")
                for name, target in mapping.items() if not isinstance(target, str) or not is_valid_target(target)]
    problems += [FieldProblem(f"mapping.{name}", "incoming field names must be 1 to 200 characters")
                 for name in mapping if not name or len(name) > 200]
    problems += [FieldProblem(f"defaults.{path}", "unknown lead field")
                 for path in defaults if not is_valid_target(path)]
    problems += [FieldProblem(f"defaults.{path}", "must be a text, number or boolean")
                 for path, value in defaults.items() if isinstance(value, (dict, list))]
    problems += [FieldProblem("required", f"unknown lead field {path!r}")
                 for path in required if not is_valid_target(path)]
    if not problems and defaults:
        # the defaults on their own must be valid lead values
        probe = _nest({**defaults, "contact.email": "probe@example.com"})
        try:
            LeadIn.model_validate(probe)
        except ValidationError as exc:
            problems += [FieldProblem(f"defaults.{error_field(tuple(e['loc']))}", e["msg"])
                         for e in exc.errors() if error_field(tuple(e["loc"])) != "contact.email"]
    return problems


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in flat.items():
        set_path(nested, path, value)
    return nested


def _scalar(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if v is not None) or None
    if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
        return value[:MAX_VALUE_LENGTH]
    return value


def map_payload(payload: dict[str, Any], spec: FormSpec,
                custom_defs: dict[str, CustomFieldDef] | None = None) -> MappingResult:
    flat: dict[str, Any] = {}
    errors: list[FieldProblem] = []
    unmapped: list[str] = []
    for name, raw in payload.items():
        if name in spec.ignored:
            continue
        target = spec.mapping.get(name)
        if target is None and is_valid_target(name):
            target = name
        if target is None:
            unmapped.append(name)
            continue
        if isinstance(raw, dict):
            errors.append(FieldProblem(name, "must be a single value, not an object"))
            continue
        value = _scalar(raw)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        flat[target] = value
    for path, value in spec.defaults.items():
        flat.setdefault(path, value)
    for path in spec.required:
        if path == "contact.full_name":
            present = flat.get(path) or flat.get("contact.first_name")
        else:
            present = flat.get(path)
        if present in (None, ""):
            sources = [n for n, t in spec.mapping.items() if t == path]
            hint = f" (mapped from {', '.join(repr(s) for s in sources)})" if sources else ""
            errors.append(FieldProblem(path, f"required{hint}"))
    nested = _nest(flat)
    custom = nested.pop("custom_fields", {})
    if custom_defs is not None and custom:
        custom, custom_errors = coerce_custom_fields(custom, custom_defs)
        errors += [FieldProblem(f"custom.{k}", m) for k, m in custom_errors.items()]
    elif custom_defs is not None:
        _, custom_errors = coerce_custom_fields({}, custom_defs)
        errors += [FieldProblem(f"custom.{k}", m) for k, m in custom_errors.items()]
    nested["custom_fields"] = custom
    try:
        lead = LeadIn.model_validate(nested)
    except ValidationError as exc:
        found = [FieldProblem(error_field(tuple(e["loc"])), e["msg"].removeprefix("Value error, "))
                 for e in exc.errors()]
        if errors:  # a whole-lead complaint adds nothing to a field already named
            found = [p for p in found if p.field != "lead"]
        return MappingResult(None, errors + found, unmapped)
    if errors:
        return MappingResult(None, errors, unmapped)
    return MappingResult(lead, [], unmapped)
