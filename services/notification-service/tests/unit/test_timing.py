"""Step timing: delays, business hours in the lead's time zone, DST, unknown zones."""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from notification_service.domain.timing import BusinessHours, next_business_moment, step_due_at, zone

HOURS = BusinessHours()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_plain_delay_ignores_business_hours():
    assert step_due_at(utc(2026, 1, 10, 23, 0), timedelta(hours=2), business_hours=None,
                       timezone="Europe/Paris") == utc(2026, 1, 11, 1, 0)


@pytest.mark.parametrize("start,tz,expected", [
    (utc(2026, 1, 5, 10, 0), "Europe/Paris", utc(2026, 1, 5, 10, 0)),  # Monday 11:00 Paris: open
    (utc(2026, 1, 5, 6, 0), "Europe/Paris", utc(2026, 1, 5, 8, 0)),  # 07:00 Paris → 09:00 Paris
    (utc(2026, 1, 5, 17, 30), "Europe/Paris", utc(2026, 1, 6, 8, 0)),  # 18:30 Paris → Tuesday 09:00
    (utc(2026, 1, 9, 16, 30), "Europe/Paris", utc(2026, 1, 12, 8, 0)),  # Friday 17:30 → Monday 09:00
    (utc(2026, 1, 10, 12, 0), "America/New_York", utc(2026, 1, 12, 14, 0)),  # Saturday → Monday 09:00 EST
    (utc(2026, 1, 5, 10, 0), "America/New_York", utc(2026, 1, 5, 14, 0)),  # 05:00 NY → 09:00 NY
    (utc(2026, 1, 5, 2, 0), "Asia/Tokyo", utc(2026, 1, 5, 2, 0)),  # 11:00 Tokyo: open
])
def test_moves_into_the_next_business_moment_in_the_leads_zone(start, tz, expected):
    assert next_business_moment(start, HOURS, zone(tz)) == expected


def test_daylight_saving_changes_the_utc_opening():
    # Paris opens at 08:00 UTC in winter and 07:00 UTC in summer (DST started 2026-03-29).
    assert next_business_moment(utc(2026, 3, 27, 20, 0), HOURS, zone("Europe/Paris")) == utc(2026, 3, 30, 7, 0)


def test_an_opening_inside_a_dst_gap_still_resolves():
    hours = BusinessHours(days=frozenset(range(7)), start=time(2, 30), end=time(5, 0))
    # 2026-03-29 02:30 does not exist in Paris; the result is a real instant within business hours.
    due = next_business_moment(utc(2026, 3, 28, 23, 0), hours, zone("Europe/Paris"))
    local = due.astimezone(zone("Europe/Paris"))
    assert due >= utc(2026, 3, 28, 23, 0) and time(2, 30) <= local.time() < time(5, 0)


def test_unknown_or_missing_zone_falls_back_to_the_org_zone():
    assert zone("Not/AZone", "Europe/Paris").key == "Europe/Paris"
    assert zone(None, "America/New_York").key == "America/New_York"
    assert zone("garbage", "also-garbage").key == "UTC"
    due = step_due_at(utc(2026, 1, 5, 5, 0), timedelta(0), business_hours=HOURS, timezone=None,
                      fallback_timezone="Europe/Paris")
    assert due == utc(2026, 1, 5, 8, 0)


def test_negative_delays_and_empty_hours_are_refused():
    with pytest.raises(ValueError):
        step_due_at(utc(2026, 1, 5), timedelta(minutes=-1), business_hours=None, timezone=None)
    with pytest.raises(ValueError):
        BusinessHours(days=frozenset())
    with pytest.raises(ValueError):
        BusinessHours(start=time(18), end=time(9))
