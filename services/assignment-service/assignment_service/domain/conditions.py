"""Conditions on lead fields: the catalogue of fields, which operators each allows, parsing and matching.

A condition is `{"field": ..., "op": ..., "value": ...}`. Text compares case-insensitively. Numeric
`between` is a half-open band [min, max) so adjacent value bands never overlap (null = unbounded);
postcode `between` is inclusive on both ends, like the ranges people write ("10000".."19999").
A missing lead value fails every operator except `ne`, `not_in` and `not_exists`.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .directory import normalise_postcode, postcode_in_range

TEXT, ID, POSTCODE, NUMBER, ANY = "text", "id", "postcode", "number", "any"

FIELDS: dict[str, str] = {
    "country": TEXT, "region": TEXT, "postcode": POSTCODE, "territory": ID, "product_line": TEXT,
    "value": NUMBER, "currency": TEXT, "source": TEXT, "score": NUMBER, "language": TEXT, "status": TEXT,
    "form_id": ID, "company.size": TEXT, "company.industry": TEXT,
    # known only when a lead enters a stage or is won
    "stage_id": ID, "stage_name": TEXT, "pipeline_id": ID,
}
PREFIXED_FIELDS: dict[str, str] = {"custom.": ANY, "utm.": TEXT}
STAGE_FIELDS = frozenset({"stage_id", "stage_name", "pipeline_id"})

_COMMON = {"eq", "ne", "in", "not_in", "exists", "not_exists"}
OPERATORS: dict[str, frozenset[str]] = {
    TEXT: frozenset(_COMMON | {"contains", "starts_with"}),
    ID: frozenset(_COMMON),
    POSTCODE: frozenset(_COMMON | {"starts_with", "between"}),
    NUMBER: frozenset(_COMMON | {"gt", "gte", "lt", "lte", "between"}),
    ANY: frozenset(_COMMON | {"contains", "starts_with", "gt", "gte", "lt", "lte", "between"}),
}
ALL_OPERATORS = frozenset().union(*OPERATORS.values())
_ORDERING = {"gt", "gte", "lt", "lte"}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.op not in ("exists", "not_exists"):
            data["value"] = self.value
        return data


def field_type(name: str) -> str | None:
    if name in FIELDS:
        return FIELDS[name]
    for prefix, kind in PREFIXED_FIELDS.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return kind
    return None


def as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and value is not None


def parse_condition(raw: Any, path: str) -> tuple[Condition | None, list[tuple[str, str]]]:
    """Validate one condition; errors name the offending part (e.g. `rules[0].conditions[1].op`)."""
    if not isinstance(raw, dict):
        return None, [(path, "a condition is an object with field, op and value")]
    name, op, value = raw.get("field"), raw.get("op"), raw.get("value")
    if not isinstance(name, str) or not name:
        return None, [(f"{path}.field", "field is required")]
    kind = field_type(name)
    if kind is None:
        known = ", ".join(sorted(FIELDS)) + ", custom.<name>, utm.<name>"
        return None, [(f"{path}.field", f"unknown field '{name}' (known fields: {known})")]
    if not isinstance(op, str) or op not in ALL_OPERATORS:
        return None, [(f"{path}.op", f"unknown operator '{op}' (operators: {', '.join(sorted(ALL_OPERATORS))})")]
    if op not in OPERATORS[kind]:
        return None, [(f"{path}.op", f"operator '{op}' is not allowed for field '{name}' "
                                     f"(allowed: {', '.join(sorted(OPERATORS[kind]))})")]
    problem = _value_problem(kind, op, value)
    if problem:
        return None, [(f"{path}.value", problem)]
    if op in ("exists", "not_exists"):
        value = None
    return Condition(name, op, value), []


def _value_problem(kind: str, op: str, value: Any) -> str | None:
    numeric = kind == NUMBER
    if op in ("exists", "not_exists"):
        return None
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            return f"'{op}' needs a non-empty list of values"
        if numeric and any(as_number(v) is None for v in value):
            return f"'{op}' on a numeric field needs numbers"
        return None
    if op == "between":
        if not isinstance(value, list) or len(value) != 2 or (value[0] is None and value[1] is None):
            return "'between' needs [min, max] (one of them may be null for an open band)"
        if kind == POSTCODE:
            if not all(isinstance(v, str) and v.strip() for v in value):
                return "postcode 'between' needs two postcodes"
            return None
        low, high = (None if v is None else as_number(v) for v in value)
        if (value[0] is not None and low is None) or (value[1] is not None and high is None):
            return "'between' needs numbers"
        if low is not None and high is not None and low >= high:
            return "'between' needs min < max"
        return None
    if op in _ORDERING:
        return None if as_number(value) is not None else f"'{op}' needs a number"
    if op in ("contains", "starts_with"):
        return None if isinstance(value, str) and value else f"'{op}' needs a non-empty text"
    # eq / ne
    if not _scalar(value):
        return f"'{op}' needs a single value"
    if numeric and as_number(value) is None:
        return f"'{op}' on a numeric field needs a number"
    return None


# ------------------------------------------------------------------ matching
def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _equal(kind: str, actual: Any, expected: Any) -> bool:
    if kind == POSTCODE:
        return normalise_postcode(str(actual)) == normalise_postcode(str(expected))
    if kind in (NUMBER, ANY):
        a, b = as_number(actual), as_number(expected)
        if a is not None and b is not None:
            return a == b
        if kind == NUMBER:
            return False
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected or str(actual).casefold() == str(expected).casefold()
    return str(actual).strip().casefold() == str(expected).strip().casefold()


def matches(condition: Condition, facts: dict[str, Any]) -> bool:
    kind = field_type(condition.field) or ANY
    actual = facts.get(condition.field)
    op, expected = condition.op, condition.value
    if op == "exists":
        return not _missing(actual)
    if op == "not_exists":
        return _missing(actual)
    if _missing(actual):
        return op in ("ne", "not_in")
    if op == "eq":
        return _equal(kind, actual, expected)
    if op == "ne":
        return not _equal(kind, actual, expected)
    if op == "in":
        return any(_equal(kind, actual, v) for v in expected)
    if op == "not_in":
        return not any(_equal(kind, actual, v) for v in expected)
    if op == "contains":
        return str(expected).casefold() in str(actual).casefold()
    if op == "starts_with":
        if kind == POSTCODE:
            return normalise_postcode(str(actual)).startswith(normalise_postcode(str(expected)))
        return str(actual).casefold().startswith(str(expected).casefold())
    if op == "between" and kind == POSTCODE:
        return postcode_in_range(str(actual), expected[0], expected[1])
    number = as_number(actual)
    if number is None:
        return False
    if op == "between":
        low, high = (None if v is None else as_number(v) for v in expected)
        return (low is None or number >= low) and (high is None or number < high)
    bound = as_number(expected)
    assert bound is not None
    return {"gt": number > bound, "gte": number >= bound, "lt": number < bound, "lte": number <= bound}[op]
