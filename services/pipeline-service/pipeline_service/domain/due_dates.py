"""Relative due times of stage tasks ("2 business days after stage entry"), in the assignee's time zone.

A due spec is `{"amount": 2, "unit": "business_days", "at": "17:00"}`:
- `hours`: plain elapsed hours;
- `days`: calendar days, same local wall-clock time (so a DST change does not shift it by an hour);
- `business_days`: the org's working days in the local time zone (salesflow_shared.calendar: Monday to
  Friday unless the org says otherwise, without its country's public holidays and its own days off). An entry
  on a day off counts from the next working day 09:00 local. `amount: 0` means the same business day.
- `at` (optional, for days and business_days): the local time of day the task is due instead of the
  entry's time (e.g. end of business). A due time that would fall before the entry itself (an entry at
  18:00 for "today at 17:00") moves to the next (business) day.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from salesflow_shared.calendar import MONDAY_TO_FRIDAY_CALENDAR, BusinessCalendar, zone

UNITS = ("hours", "days", "business_days")
MAX_AMOUNT = 365
WORKDAY_START = time(9, 0)
MAX_SEARCH_DAYS = 366  # a calendar with no working day in a year is a configuration error, not a loop


@dataclass(frozen=True)
class DueSpec:
    amount: int
    unit: str
    at: time | None = None


def parse_due_spec(raw: Any, path: str = "due") -> tuple[DueSpec | None, list[tuple[str, str]]]:
    """(spec, problems as (path, message))."""
    if not isinstance(raw, dict):
        return None, [(path, "must be an object like {\"amount\": 2, \"unit\": \"business_days\"}")]
    problems: list[tuple[str, str]] = [(f"{path}.{k}", "unknown key") for k in raw if k not in ("amount", "unit", "at")]
    amount = as_int(raw.get("amount"))
    if amount is None or not 0 <= amount <= MAX_AMOUNT:
        problems.append((f"{path}.amount", f"must be an integer from 0 to {MAX_AMOUNT}"))
    unit = raw.get("unit")
    if unit not in UNITS:
        problems.append((f"{path}.unit", f"must be one of {', '.join(UNITS)}"))
    at: time | None = None
    if raw.get("at") is not None:
        try:
            at = time.fromisoformat(str(raw["at"]))
        except ValueError:
            problems.append((f"{path}.at", "must be a local time like 17:00"))
        if unit == "hours":
            problems.append((f"{path}.at", "not used with unit 'hours'"))
    if problems:
        return None, problems
    assert amount is not None and isinstance(unit, str), "both were checked above"
    return DueSpec(amount=amount, unit=unit, at=at), []


def as_int(value: Any) -> int | None:
    """An integer, also when JSON wrote it as 3.0; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def compute_due(entered_at: datetime, spec: DueSpec, tz_name: str | None,
                calendar: BusinessCalendar = MONDAY_TO_FRIDAY_CALENDAR) -> datetime:
    """The UTC due time of a task created at `entered_at` (aware) for an assignee in `tz_name`; business days
    are the org's working days (`calendar`: weekdays, public holidays, the org's own days off)."""
    if entered_at.tzinfo is None:
        raise ValueError("entered_at must be timezone-aware")
    if spec.unit == "hours":
        return (entered_at + timedelta(hours=spec.amount)).astimezone(UTC)
    tz = zone(tz_name)
    local = entered_at.astimezone(tz)
    day, clock = local.date(), local.timetz().replace(tzinfo=None)
    if spec.unit == "days":
        day = day + timedelta(days=spec.amount)
    else:
        if not calendar.is_working_day(day):  # an entry on a day off starts counting the next working morning
            day = _next_working_day(day, calendar)
            clock = WORKDAY_START
        for _ in range(spec.amount):
            day = _next_working_day(day, calendar)
    due = _local(day, spec.at or clock, tz)
    while due <= entered_at:  # only possible with `at`
        day = _next_working_day(day, calendar) if spec.unit == "business_days" else day + timedelta(days=1)
        due = _local(day, spec.at or clock, tz)
    return due


def _next_working_day(day: date, calendar: BusinessCalendar) -> date:
    for _ in range(MAX_SEARCH_DAYS):
        day = day + timedelta(days=1)
        if calendar.is_working_day(day):
            return day
    raise ValueError(f"the business calendar has no working day within {MAX_SEARCH_DAYS} days of {day}")


def _local(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time; a time skipped by a spring-forward change moves forward."""
    wall = datetime.combine(day, clock)
    due = wall.replace(tzinfo=tz)  # fold=0: the first of two ambiguous times
    if due.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        due = (wall + timedelta(hours=1)).replace(tzinfo=tz)
    return due.astimezone(UTC)
