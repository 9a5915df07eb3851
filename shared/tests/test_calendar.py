"""Time zones and the business calendar (weekdays, public holidays per country and region, an org's days off)."""
from __future__ import annotations

from datetime import date

import pytest

from salesflow_shared.calendar import BusinessCalendar, calendar_problems, zone


def test_zone_falls_back_rather_than_failing():
    assert zone("Europe/Paris").key == "Europe/Paris"
    assert zone("Mars/Olympus", "Europe/Berlin").key == "Europe/Berlin"
    assert zone(None, None).key == "UTC"
    assert zone("../../etc/passwd").key == "UTC"


def test_working_days_by_weekday_holidays_and_days_off():
    france = BusinessCalendar.of(country="FR", days_off=[date(2026, 12, 24)])
    assert france.is_working_day(date(2026, 12, 23))  # a Wednesday
    assert not france.is_working_day(date(2026, 12, 24))  # the org's own day off
    assert not france.is_working_day(date(2026, 12, 25))  # Christmas, a public holiday
    assert not france.is_working_day(date(2026, 12, 26))  # a Saturday
    assert not france.is_working_day(date(2026, 7, 14))  # Bastille Day, a Tuesday
    assert BusinessCalendar().is_working_day(date(2026, 7, 14))  # no country: weekdays only
    # A region's own holiday: Corpus Christi (4 June 2026) in Bavaria, not in Berlin.
    assert not BusinessCalendar.of(country="DE", subdivision="BY").is_working_day(date(2026, 6, 4))
    assert BusinessCalendar.of(country="DE", subdivision="BE").is_working_day(date(2026, 6, 4))
    with pytest.raises(ValueError):
        BusinessCalendar.of(working_days=[])


def test_problems_name_the_field():
    assert calendar_problems("DE", "BY") == []
    assert calendar_problems(None, None) == []
    assert [f for f, _ in calendar_problems("XX", None)] == ["country"]
    assert [f for f, _ in calendar_problems("DE", "XX")] == ["subdivision"]
    assert [f for f, _ in calendar_problems(None, "BY")] == ["subdivision"]
