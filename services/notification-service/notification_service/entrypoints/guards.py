"""Text PostgreSQL cannot store is refused at the door, never a 500 from the database: ids in the path with a NUL
or a lone UTF-16 surrogate are not found (404); such query parameters are a 422 naming them; in JSON bodies,
NUL is excluded by the documented field patterns and lone surrogates (which JSON escapes can produce) are a
422 naming the field here."""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from salesflow_shared.errors import FieldError, NotFound, ValidationFailed


def unstorable(text: str) -> bool:
    return "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text)


def _lone_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _walk(value: Any, path: str, found: list[FieldError]) -> None:
    if isinstance(value, str):
        if _lone_surrogate(value):
            found.append(FieldError(path or "body", "contains an unpaired UTF-16 surrogate"))
    elif isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            if _lone_surrogate(str(key)):
                found.append(FieldError(path or "body", "a key contains an unpaired UTF-16 surrogate"))
            _walk(child, child_path, found)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _walk(child, f"{path}.{index}" if path else str(index), found)


async def reject_unstorable_text(request: Request) -> None:
    if any(unstorable(v) for v in request.path_params.values()):
        raise NotFound("no such resource")
    found: list[FieldError] = []
    for name, value in request.query_params.multi_items():
        if unstorable(value) or unstorable(name):
            found.append(FieldError(name, "contains a NUL character or an unpaired surrogate"))
    if "json" in request.headers.get("content-type", ""):
        try:
            _walk(json.loads(await request.body()), "", found)
        except ValueError:
            pass  # not JSON: FastAPI's own validation answers
    if found:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in found), errors=found)
