"""Time, injected: services take a `Clock`, production passes the system clock, tests one they move by hand,
so due dates, sweeps, sequences and nurturing are testable without waiting."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by `delta` and/or by timedelta keyword parts (`advance(hours=2)`)."""
        self._now = self._now + (delta or timedelta()) + timedelta(**parts)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment


def as_aware(value: datetime) -> datetime:
    """The instant with its offset; a naive value is UTC (SQLite, in embedded mode, drops the zone)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def rfc3339(value: datetime | None) -> str | None:
    """An instant as the API writes it: RFC 3339 with its offset, in both run modes."""
    return None if value is None else as_aware(value).isoformat()


# A datetime field of a response model that is written with its offset even when the database gave it naive.
UtcDateTime = Annotated[datetime, AfterValidator(as_aware)]


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def rfc3339_text(value: Any) -> Any:
    """Only RFC 3339 text is an instant (a number is not a Unix time, a date alone or a time without its offset
    is ambiguous): anything else is a 422 naming the field."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value.strip()):
        raise ValueError("must be an RFC 3339 date-time with its offset, e.g. 2026-01-31T09:00:00Z")
    return value.strip()


# A datetime a client sends (query or body): RFC 3339 with an offset, nothing else.
Rfc3339 = Annotated[datetime, BeforeValidator(rfc3339_text),
                    WithJsonSchema({"type": "string", "format": "date-time",
                                    "pattern": _RFC3339.pattern})]
