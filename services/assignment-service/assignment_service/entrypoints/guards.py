"""Reject text PostgreSQL cannot store (NUL characters, lone UTF-16 surrogates) as a 422 naming the field,
instead of letting the database driver fail with a 500."""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from salesflow_shared.errors import FieldError, ValidationFailed


def _bad(text: str) -> bool:
    return "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text)


def _walk(value: Any, path: str, found: list[FieldError]) -> None:
    if isinstance(value, str):
        if _bad(value):
            found.append(FieldError(path or "body", "contains a NUL character or an unpaired surrogate"))
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if _bad(str(key)):
                found.append(FieldError(child, "the key contains a NUL character or an unpaired surrogate"))
            _walk(item, child, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{path}.{index}" if path else str(index), found)


async def reject_unstorable_text(request: Request) -> None:
    found: list[FieldError] = []
    for name, value in {**request.path_params, **dict(request.query_params)}.items():
        _walk(value, name, found)
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()
        if body:
            try:
                _walk(json.loads(body), "", found)
            except ValueError:
                pass  # not JSON: FastAPI's own validation answers
    if found:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in found), errors=found)
