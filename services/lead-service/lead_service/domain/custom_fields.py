"""Typed custom fields an org defines for its leads, and the check of submitted values against them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

CustomType = Literal["string", "number", "boolean", "date", "choice"]
_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n", ""}


@dataclass(frozen=True)
class CustomFieldDef:
    key: str
    type: CustomType
    options: tuple[str, ...] = ()
    required: bool = False


def coerce_custom_fields(values: dict[str, Any],
                         defs: dict[str, CustomFieldDef]) -> tuple[dict[str, Any], dict[str, str]]:
    """Return (clean values, errors by key). Strings from forms/CSV are converted to the declared type."""
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, raw in values.items():
        definition = defs.get(key)
        if definition is None:
            errors[key] = "no custom field with this key is defined for the organization"
            continue
        if raw is None or raw == "":
            continue
        try:
            clean[key] = _coerce(raw, definition)
        except ValueError as exc:
            errors[key] = str(exc)
    for key, definition in defs.items():
        if definition.required and key not in clean and key not in errors:
            errors[key] = "required"
    return clean, errors


def _coerce(raw: Any, definition: CustomFieldDef) -> Any:
    kind = definition.type
    if kind == "string":
        if isinstance(raw, (dict, list)):
            raise ValueError("must be text")
        text = str(raw)
        if len(text) > 1000:
            raise ValueError("at most 1000 characters")
        return text
    if kind == "number":
        if isinstance(raw, bool):
            raise ValueError("must be a number")
        try:
            number = Decimal(str(raw).strip())
        except InvalidOperation:
            raise ValueError("must be a number") from None
        if not number.is_finite():
            raise ValueError("must be a finite number")
        return float(number) if number != number.to_integral_value() else int(number)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false")
    if kind == "date":
        try:
            return date.fromisoformat(str(raw).strip()).isoformat()
        except ValueError:
            raise ValueError("must be a date YYYY-MM-DD") from None
    if kind == "choice":
        text = str(raw).strip()
        if text not in definition.options:
            raise ValueError(f"must be one of {', '.join(definition.options)}")
        return text
    raise ValueError(f"unknown type {kind}")
