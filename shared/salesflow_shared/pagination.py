"""Cursor pagination: `?limit=&cursor=` → `{"items": [...], "next_cursor": ...}` (docs/architecture.md).

A cursor is the sort key of the last item returned, opaque to clients (base64url JSON). Keyset
pagination stays fast and stable while rows are inserted, unlike offsets.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Query
from pydantic import BaseModel, Field

from .errors import ValidationFailed

T = TypeVar("T")

LimitParam = Annotated[int, Query(ge=1, le=500, description="Page size")]
CursorParam = Annotated[str | None, Query(description="Opaque cursor from the previous page's next_cursor")]


class Page(BaseModel, Generic[T]):
    """The one pagination envelope (documented per item model by `contract.page_of`)."""

    items: list[T]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page")


# A cursor carries a check of its values, so one this API did not issue (made up, edited, or of another list
# whose keys have other types) is a 422 naming `cursor` rather than a query with values of the wrong type (a 500
# on PostgreSQL) or a page that silently starts somewhere else. It is a tamper check, not a secret.
_CURSOR_CHECK_KEY = b"salesflow cursor v1"


def _cursor_check(payload: str) -> str:
    return hmac.new(_CURSOR_CHECK_KEY, payload.encode(), hashlib.sha256).hexdigest()[:16]


def encode_cursor(values: list[Any]) -> str:
    payload = json.dumps(values, default=str)
    return base64.urlsafe_b64encode(json.dumps([payload, _cursor_check(payload)]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, expected_len: int) -> list[Any] | None:
    if not cursor:
        return None
    refused = ValidationFailed.single("cursor", "not a cursor this API issued")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload, check = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(payload, str) or not isinstance(check, str) \
                or not hmac.compare_digest(check, _cursor_check(payload)):
            raise refused
        values = json.loads(payload)
    except (ValueError, TypeError) as exc:  # not base64, not JSON, not a [payload, check] pair
        raise refused from exc
    if not isinstance(values, list) or len(values) != expected_len:
        raise refused
    return values


def page_from_rows(items: list[T], limit: int, key: Any) -> Page[T]:
    """`items` was fetched with limit + 1 rows; `key(item)` gives the sort key list of an item."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(key(items[-1])))
    return Page(items=items, next_cursor=None)


async def keyset_page(session: Any, query: Any, columns: Sequence[Any], limit: int, cursor: str | None,
                      render: Callable[[Any], dict[str, Any]], *, descending: bool = False) -> dict[str, Any]:
    """One page of `query` in order of `columns` (unique together; ascending unless `descending`), as
    `{"items", "next_cursor"}`.

    The cursor holds the last row's values of `columns`; a cursor this API did not issue is a 422 naming it.
    """
    after = decode_cursor(cursor, len(columns))
    if after is not None:
        try:
            values = [datetime.fromisoformat(str(v)) if isinstance(c.type, sa.DateTime) else v
                      for c, v in zip(columns, after, strict=True)]
        except ValueError as exc:
            raise ValidationFailed.single("cursor", "not a cursor this API issued") from exc
        last_seen = sa.tuple_(*[sa.bindparam(None, v, type_=c.type) for c, v in zip(columns, values, strict=True)])
        query = query.where(sa.tuple_(*columns) < last_seen if descending else sa.tuple_(*columns) > last_seen)
    order = [c.desc() for c in columns] if descending else list(columns)
    rows = (await session.execute(query.order_by(*order).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]._mapping
        next_cursor = encode_cursor([last[c.name].isoformat() if isinstance(last[c.name], datetime)
                                     else last[c.name] for c in columns])
    return {"items": [render(r) for r in rows[:limit]], "next_cursor": next_cursor}
