"""Calendar periods, epoch-second times and the clock: pure functions, no I/O."""
from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Literal, overload

Period = Literal["month", "quarter", "year"]
PERIODS: tuple[Period, ...] = ("month", "quarter", "year")
Clock = Callable[[], datetime]
DAY_S = 86400.0


def system_clock() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@overload
def to_ts(moment: datetime) -> float: ...
@overload
def to_ts(moment: None) -> None: ...
def to_ts(moment: datetime | None) -> float | None:
    """Epoch seconds of a moment (a naive datetime is taken as UTC)."""
    return None if moment is None else as_utc(moment).timestamp()


def date_ts(day: date | None) -> float | None:
    """Epoch seconds of a calendar date's start (UTC)."""
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def day_number(ts: float) -> int:
    """Days since 1970-01-01 UTC of a moment."""
    return int(ts // DAY_S)


def month_number(ts: float) -> int:
    """Months since January of year 0 (UTC) of a moment: year × 12 + month − 1. The whole second decides
    (floor), so a time is in month m exactly when month_start_ts(m) <= ts < month_start_ts(m + 1)."""
    moment = datetime.fromtimestamp(math.floor(ts), UTC)
    return moment.year * 12 + moment.month - 1


def month_start_ts(month: int) -> float:
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC).timestamp()


def whole_months(from_ts: float | None, to_ts: float | None) -> tuple[int | None, int | None]:
    """[first, end) of the months lying wholly inside [from_ts, to_ts) (None: unbounded on that side).
    first >= end when no whole month fits."""
    first = None
    if from_ts is not None:
        first = month_number(from_ts)
        if month_start_ts(first) < from_ts:
            first += 1
    return first, None if to_ts is None else month_number(to_ts)


def tiebreak(occurred_at: datetime, event_id: str) -> str:
    """A sortable key that orders events with the same subject_version deterministically."""
    return f"{as_utc(occurred_at).strftime('%Y-%m-%dT%H:%M:%S.%f')}|{event_id}"


def period_start(period: Period, moment: datetime) -> datetime:
    moment = as_utc(moment)
    if period == "month":
        return datetime(moment.year, moment.month, 1, tzinfo=UTC)
    if period == "quarter":
        return datetime(moment.year, 3 * ((moment.month - 1) // 3) + 1, 1, tzinfo=UTC)
    return datetime(moment.year, 1, 1, tzinfo=UTC)


def next_period_start(period: Period, start: datetime) -> datetime:
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    index = start.year * 12 + (start.month - 1) + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def period_bounds(period: Period, moment: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar period (UTC) that contains `moment`."""
    start = period_start(period, moment)
    return start, next_period_start(period, start)


def quarters_overlapping(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The calendar quarters that overlap [start, end)."""
    out: list[tuple[datetime, datetime]] = []
    q_start = period_start("quarter", start)
    while q_start < as_utc(end):
        q_end = next_period_start("quarter", q_start)
        out.append((q_start, q_end))
        q_start = q_end
    return out


def elapsed_share(start: datetime, end: datetime, now: datetime) -> float:
    """Share of [start, end) elapsed at `now`, clamped to [0, 1]."""
    total = (end - start).total_seconds()
    done = (as_utc(now) - start).total_seconds()
    return min(max(done / total, 0.0), 1.0) if total > 0 else 1.0


def days(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / DAY_S, 4)


def hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600.0, 4)


def last_day(start: datetime, end: datetime) -> date:
    return (end - timedelta(days=1)).date()
