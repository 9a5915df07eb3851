"""Setting an org's business calendar (validated, versioned, announced with BusinessCalendarSet)."""
from __future__ import annotations

from datetime import date, datetime

from salesflow_shared.calendar import WEEKDAYS, BusinessCalendar, calendar_problems
from salesflow_shared.errors import FieldError, ValidationFailed
from salesflow_shared.events import BusinessCalendarSetV1
from salesflow_shared.preconditions import check_if_match, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import calendars
from ..adapters.calendars import StoredCalendar

MAX_DAYS_OFF = 400  # a year of company days off and then some; a longer list is a mistake, not a calendar


def working_day_names(calendar: BusinessCalendar) -> list[str]:
    return [WEEKDAYS[i] for i in sorted(calendar.working_days)]


async def set_calendar(uow: UnitOfWork, org_id: str, *, working_days: list[str], country: str | None,
                       subdivision: str | None, days_off: list[date], if_match: str | None,
                       now: datetime) -> StoredCalendar:
    current = await calendars.load(uow.session, org_id)
    check_if_match(if_match, strong_etag(current.version) if current.version else None, what="business calendar")
    problems = [FieldError(name, message) for name, message in calendar_problems(country, subdivision)]
    if not working_days:
        problems.append(FieldError("working_days", "needs at least one working day"))
    if len(set(working_days)) != len(working_days):
        problems.append(FieldError("working_days", "names each day once"))
    if len(days_off) > MAX_DAYS_OFF:
        problems.append(FieldError("days_off", f"at most {MAX_DAYS_OFF} days"))
    if problems:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in problems), errors=problems)
    calendar = BusinessCalendar.of((WEEKDAYS.index(d) for d in working_days), country, subdivision, days_off)
    version = current.version + 1
    await calendars.save(uow.session, org_id, calendar, version, now)
    uow.publish(BusinessCalendarSetV1(working_days=working_day_names(calendar), country=country,
                                      subdivision=subdivision, days_off=sorted(calendar.days_off)),
                org_id=org_id, subject_id=org_id, subject_version=version, occurred_at=now)
    return StoredCalendar(calendar, version, now)
