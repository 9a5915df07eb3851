"""lead-service's queries, one module per aggregate: each function takes the session and the org (the few
workers that sweep every org say so) and answers typed objects."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.errors import ValidationFailed
from salesflow_shared.pagination import Page, keyset_page

from ...domain.times import as_utc

T = TypeVar("T")
# The INSERT ... ON CONFLICT constructs of the two databases (statements using them are built once per dialect)
INSERT_BY_DIALECT: dict[str, Callable[..., Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def new_id() -> str:
    return str(uuid.uuid4())


def cursor_instant(value: Any) -> datetime:
    """The instant a cursor holds (UTC); a 422 naming the cursor when it is not one."""
    try:
        return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ValidationFailed.single("cursor", "not a cursor this API issued") from None


async def keyset(session: AsyncSession, query: Any, columns: Sequence[Any], limit: int, cursor: str | None,
                 read: Callable[[Any], T], *, descending: bool = False) -> Page[T]:
    """One page of `query` in the order of `columns` (the shared cursor format: `keyset_page`)."""
    page = await keyset_page(session, query, columns, limit, cursor, lambda row: {"item": read(row)},
                             descending=descending)
    return Page(items=[entry["item"] for entry in page["items"]], next_cursor=page["next_cursor"])
