"""Text PostgreSQL cannot store is refused at the door, never a 500 from the database driver.

A NUL character or a lone UTF-16 surrogate (which JSON escapes can produce) in a path id means no such
resource (404); in a query parameter or a JSON body it is a 422 naming the field. Installed on every
service's API routes by `create_service_app`.
"""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from .errors import FieldError, NotFound, ValidationFailed


def unstorable(text: str) -> bool:
    return "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text)


def _walk(value: Any, path: str, found: list[FieldError]) -> None:
    if isinstance(value, str):
        if unstorable(value):
            found.append(FieldError(path or "body", "contains a NUL character or an unpaired surrogate"))
    elif isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else str(key)
            if unstorable(str(key)):
                found.append(FieldError(child_path, "the key contains a NUL character or an unpaired surrogate"))
            _walk(child, child_path, found)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _walk(child, f"{path}.{index}" if path else str(index), found)


async def reject_unstorable_text(request: Request) -> None:
    if any(unstorable(str(v)) for v in request.path_params.values()):
        raise NotFound("no such resource")
    found: list[FieldError] = []
    for name, value in request.query_params.multi_items():
        if unstorable(value) or unstorable(name):
            found.append(FieldError(name, "contains a NUL character or an unpaired surrogate"))
    if request.method in ("POST", "PUT", "PATCH") and "json" in request.headers.get("content-type", ""):
        body = await request.body()
        if body:
            try:
                _walk(json.loads(body), "", found)
            except ValueError:
                pass  # not JSON: the endpoint's own validation answers
    if found:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in found), errors=found)
