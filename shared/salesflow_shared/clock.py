"""Time, injected: services take a `Clock`, production passes the system clock, tests one they move by hand,
so due dates, sweeps, sequences and nurturing are testable without waiting."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


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
