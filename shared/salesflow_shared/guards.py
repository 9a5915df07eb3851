"""What is refused at the door, never a 500 from the parser or the database driver.

A NUL character or a lone UTF-16 surrogate (which JSON escapes can produce) in a path id means no such
resource (404); in a query parameter or a JSON body it is a 422 naming the field. Installed on every
service's API routes by `create_service_app`. JSON bodies nested too deep or holding too many values are
refused before they are parsed (`json_shape_problem`, run by `JsonLimitsMiddleware`).
"""
from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
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


# A JSON string literal (escapes included); replaced by a placeholder so brackets and commas inside strings
# do not count. Written as an unrolled loop: linear, no backtracking.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_EMPTY_CONTAINER = re.compile(rb"[\[{]\s*[\]}]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1, +1, -1, -1


def json_shape_problem(body: bytes, max_depth: int, max_items: int) -> str | None:
    """Why a JSON body is too deep or too big to parse, or None. Counts without parsing (json.loads recurses
    once per level: 20,000 nested brackets would end in a RecursionError).

    Items are array elements plus object members, summed over every container.
    """
    skeleton = _JSON_STRING.sub(b"0", body)
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    containers = brackets.count(b"[") + brackets.count(b"{")
    # The running sum of +1 per opening and -1 per closing bracket is the depth (summed in C, not per byte).
    if containers > max_depth and max(accumulate(array("b", brackets.translate(_STEP)))) > max_depth:
        return f"JSON nested deeper than {max_depth} levels (the limit is max_json_depth = {max_depth})"
    items = skeleton.count(b",") + containers  # an empty container holds nothing: subtracted when it matters
    if items > max_items and items - len(_EMPTY_CONTAINER.findall(skeleton)) > max_items:
        return f"JSON with more than {max_items} values (the limit is max_json_items = {max_items})"
    return None
