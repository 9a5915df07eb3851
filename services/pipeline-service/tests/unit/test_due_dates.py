"""Relative due times: business days skip weekends in the assignee's zone; DST keeps wall-clock time."""
from datetime import UTC, datetime

import pytest

from pipeline_service.domain.due_dates import DueSpec, compute_due, parse_due_spec


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_business_days_skip_the_weekend():
    # Thursday 2026-11-26 10:00 in New York (15:00 UTC) + 2 business days → Monday 10:00 New York
    due = compute_due(utc(2026, 11, 26, 15, 0), DueSpec(2, "business_days"), "America/New_York")
    assert due == utc(2026, 11, 30, 15, 0)


def test_business_days_use_the_local_date_not_the_utc_date():
    # Friday 23:30 in Tokyo is still Friday 14:30 UTC; in Tokyo, +1 business day is Monday 23:30 local.
    due = compute_due(utc(2026, 11, 27, 14, 30), DueSpec(1, "business_days"), "Asia/Tokyo")
    assert due == utc(2026, 11, 30, 14, 30)
    # The same instant in Los Angeles is Friday 06:30 → Monday 06:30 LA (14:30 UTC) as well; in UTC too.
    assert compute_due(utc(2026, 11, 27, 14, 30), DueSpec(1, "business_days"), "UTC") == utc(2026, 11, 30, 14, 30)
    # Saturday 01:00 in Tokyo is Friday 16:00 UTC: a weekend entry in Tokyo counts from Monday 09:00.
    due = compute_due(utc(2026, 11, 27, 16, 0), DueSpec(1, "business_days"), "Asia/Tokyo")
    assert due == utc(2026, 12, 1, 0, 0)  # Tuesday 09:00 Tokyo


def test_weekend_entry_counts_from_monday_morning():
    saturday = utc(2026, 11, 28, 12, 0)
    assert compute_due(saturday, DueSpec(0, "business_days"), "UTC") == utc(2026, 11, 30, 9, 0)
    assert compute_due(saturday, DueSpec(2, "business_days"), "UTC") == utc(2026, 12, 2, 9, 0)


def test_at_sets_the_local_time_of_day():
    due = compute_due(utc(2026, 11, 25, 8, 0), DueSpec(0, "business_days", at=datetime(2000, 1, 1, 17).time()),
                      "Europe/Paris")
    assert due == utc(2026, 11, 25, 16, 0)  # 17:00 Paris (UTC+1)


def test_days_keep_wall_clock_time_across_dst():
    # Paris leaves summer time on 2026-10-25: 09:00 local is 07:00 UTC before and 08:00 UTC after.
    due = compute_due(utc(2026, 10, 23, 7, 0), DueSpec(3, "days"), "Europe/Paris")
    assert due == utc(2026, 10, 26, 8, 0)
    # hours are plain elapsed time
    assert compute_due(utc(2026, 10, 24, 7, 0), DueSpec(48, "hours"), "Europe/Paris") == utc(2026, 10, 26, 7, 0)


def test_unknown_time_zone_falls_back_to_utc():
    assert compute_due(utc(2026, 11, 25, 10), DueSpec(1, "business_days"), "Mars/Olympus") == utc(2026, 11, 26, 10)


def test_naive_entry_is_refused():
    with pytest.raises(ValueError):
        compute_due(datetime(2026, 11, 25, 10), DueSpec(1, "days"), "UTC")


@pytest.mark.parametrize("raw, bad", [
    ({"amount": -1, "unit": "days"}, "due.amount"),
    ({"amount": 2, "unit": "weeks"}, "due.unit"),
    ({"amount": 2, "unit": "days", "at": "25:00"}, "due.at"),
    ({"amount": 2, "unit": "hours", "at": "17:00"}, "due.at"),
    ({"amount": 2, "unit": "days", "when": "soon"}, "due.when"),
])
def test_bad_due_specs_name_the_field(raw, bad):
    spec, problems = parse_due_spec(raw)
    assert spec is None and bad in [p for p, _ in problems]


def test_a_wall_time_skipped_by_spring_forward_moves_forward():
    # 02:30 does not exist in Paris on 2027-03-28: the task is due at 03:30 summer time (01:30 UTC).
    due = compute_due(utc(2027, 3, 26, 1, 30), DueSpec(2, "days"), "Europe/Paris")
    assert due == utc(2027, 3, 28, 1, 30)
    assert compute_due(utc(2027, 3, 26, 1, 30), DueSpec(1, "business_days"), "Europe/Paris") == utc(2027, 3, 29, 0, 30)


def test_a_due_time_of_day_already_past_moves_to_the_next_business_day():
    five_pm = datetime(2000, 1, 1, 17).time()
    # Friday 18:00 UTC, "today at 17:00" → Monday 17:00 (not a due time before the task existed).
    assert compute_due(utc(2026, 11, 27, 18), DueSpec(0, "business_days", at=five_pm), "UTC") == utc(2026, 11, 30, 17)
    assert compute_due(utc(2026, 11, 27, 18), DueSpec(0, "days", at=five_pm), "UTC") == utc(2026, 11, 28, 17)
    assert compute_due(utc(2026, 11, 27, 16), DueSpec(0, "business_days", at=five_pm), "UTC") == utc(2026, 11, 27, 17)


def test_business_days_skip_the_orgs_public_holidays_and_its_own_days_off():
    from datetime import date

    from salesflow_shared.calendar import BusinessCalendar

    # Germany, Easter 2026: Good Friday 3 April and Easter Monday 6 April are public holidays.
    germany = BusinessCalendar.of(country="DE")
    thursday_before_easter = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)  # 14:00 in Berlin (CEST)
    two_days = DueSpec(2, "business_days")
    # Tuesday 7 April is the first working day, Wednesday 8 April the second: 14:00 Berlin = 12:00 UTC.
    assert compute_due(thursday_before_easter, two_days, "Europe/Berlin", germany) == datetime(
        2026, 4, 8, 12, 0, tzinfo=UTC)
    # Without the calendar (Monday to Friday only) it would be Monday 6 April.
    assert compute_due(thursday_before_easter, two_days, "Europe/Berlin") == datetime(2026, 4, 6, 12, 0, tzinfo=UTC)
    # The org also closes on Tuesday 7 April: Wednesday and Thursday are the two working days.
    closed = BusinessCalendar.of(country="DE", days_off=[date(2026, 4, 7)])
    assert compute_due(thursday_before_easter, two_days, "Europe/Berlin", closed) == datetime(
        2026, 4, 9, 12, 0, tzinfo=UTC)
    # An entry on Good Friday counts from the next working morning (Tuesday 09:00), one day on: Wednesday 09:00.
    good_friday = datetime(2026, 4, 3, 8, 0, tzinfo=UTC)
    assert compute_due(good_friday, DueSpec(1, "business_days"), "Europe/Berlin", germany) == datetime(
        2026, 4, 8, 7, 0, tzinfo=UTC)
    # A regional holiday: Corpus Christi (4 June 2026) is one in Bavaria, not in Berlin.
    wednesday = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)
    bavaria, berlin = BusinessCalendar.of(country="DE", subdivision="BY"), BusinessCalendar.of(country="DE",
                                                                                              subdivision="BE")
    assert compute_due(wednesday, DueSpec(1, "business_days"), "Europe/Berlin", bavaria).date() == date(2026, 6, 5)
    assert compute_due(wednesday, DueSpec(1, "business_days"), "Europe/Berlin", berlin).date() == date(2026, 6, 4)


def test_a_sunday_to_thursday_week():
    from salesflow_shared.calendar import BusinessCalendar

    sunday_to_thursday = BusinessCalendar.of(working_days=[6, 0, 1, 2, 3])
    thursday = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # 10:00 in Jerusalem
    assert compute_due(thursday, DueSpec(1, "business_days"), "Asia/Jerusalem", sunday_to_thursday) == datetime(
        2026, 11, 29, 8, 0, tzinfo=UTC)  # Sunday 10:00
