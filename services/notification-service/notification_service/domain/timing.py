"""When a sequence step is due: a delay after the previous step, optionally moved into business hours in the
lead's time zone (the org's default zone when the lead's is unknown or invalid). Pure code, no I/O."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from salesflow_shared.calendar import zone

__all__ = ["BusinessHours", "next_business_moment", "step_due_at", "zone"]


@dataclass(frozen=True)
class BusinessHours:
    days: frozenset[int] = field(default_factory=lambda: frozenset({0, 1, 2, 3, 4}))  # Monday = 0
    start: time = time(9, 0)
    end: time = time(17, 0)

    def __post_init__(self) -> None:
        if not self.days:
            raise ValueError("business hours need at least one day")
        if not self.start < self.end:
            raise ValueError("business hours must start before they end")


def next_business_moment(moment: datetime, hours: BusinessHours, tz: ZoneInfo) -> datetime:
    """`moment` itself when it falls inside business hours in `tz`, else the next opening (in UTC)."""
    local = moment.astimezone(tz)
    for _ in range(15):  # at most two weeks ahead: any non-empty set of days recurs within 7
        if local.weekday() in hours.days:
            opening = local.replace(hour=hours.start.hour, minute=hours.start.minute, second=0, microsecond=0)
            closing = local.replace(hour=hours.end.hour, minute=hours.end.minute, second=0, microsecond=0)
            if local < opening:
                return _resolve(opening, tz)
            if local < closing:
                return local.astimezone(UTC)
        next_day = (local + timedelta(days=1)).date()
        local = datetime.combine(next_day, time(0, 0), tzinfo=tz)
    raise AssertionError("unreachable: business hours always recur within a week")


def _resolve(local: datetime, tz: ZoneInfo) -> datetime:
    # An opening that falls in a DST gap does not exist; round-tripping through UTC moves it past the gap.
    return local.astimezone(UTC).astimezone(tz).astimezone(UTC)


def step_due_at(previous: datetime, delay: timedelta, *, business_hours: BusinessHours | None,
                timezone: str | None, fallback_timezone: str = "UTC") -> datetime:
    """Due time of a step `delay` after `previous`; moved to the next business moment when asked."""
    if delay < timedelta(0):
        raise ValueError("a step delay cannot be negative")
    due = previous + delay
    if business_hours is None:
        return due.astimezone(UTC)
    return next_business_moment(due, business_hours, zone(timezone, fallback_timezone))
