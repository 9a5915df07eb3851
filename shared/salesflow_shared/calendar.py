"""Time zones and an org's business calendar: which days are working days, by weekday and public holidays.

One calendar for every service that counts business days or hours (pipeline-service's task due dates,
notification-service's sequence sending windows). Public holidays come from the `holidays` package (national
and regional calendars, maintained upstream); an org adds its own days off (a company holiday) on top.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONDAY_TO_FRIDAY = frozenset(range(5))  # date.weekday(): Monday = 0


def zone(name: str | None, fallback: str | None = "UTC") -> ZoneInfo:
    """The named IANA zone; else the fallback zone; else UTC (a bad zone on a lead must never block its work)."""
    for candidate in (name, fallback, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


@lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """The public holidays of a country (ISO 3166-1 alpha-2) or one of its subdivisions in one year."""
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


def calendar_problems(country: str | None, subdivision: str | None) -> list[tuple[str, str]]:
    """What is wrong with a country/subdivision pair, as (field, message); empty when `holidays` knows it."""
    if country is None:
        return [("subdivision", "needs a country")] if subdivision else []
    supported = holidays.list_supported_countries()
    if country not in supported:
        return [("country", "must be an ISO 3166-1 alpha-2 code of a country with a public holiday calendar, "
                            "such as 'DE' or 'US'")]
    if subdivision is not None and subdivision not in supported[country]:
        return [("subdivision", f"must be one of {country}'s subdivisions: {', '.join(supported[country])}")]
    return []


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days: the weekdays in `working_days` that are neither public holidays of the country (and
    subdivision) nor one of the org's own `days_off`."""

    working_days: frozenset[int] = MONDAY_TO_FRIDAY
    country: str | None = None
    subdivision: str | None = None
    days_off: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.working_days or not self.working_days <= set(range(7)):
            raise ValueError("working days are a non-empty set of weekdays (Monday = 0)")

    def is_holiday(self, day: date) -> bool:
        if day in self.days_off:
            return True
        return self.country is not None and day in public_holidays(self.country, self.subdivision, day.year)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.working_days and not self.is_holiday(day)

    @classmethod
    def of(cls, working_days: Iterable[int] | None = None, country: str | None = None,
           subdivision: str | None = None, days_off: Iterable[date] = ()) -> BusinessCalendar:
        return cls(frozenset(working_days) if working_days is not None else MONDAY_TO_FRIDAY, country, subdivision,
                   frozenset(days_off))


MONDAY_TO_FRIDAY_CALENDAR = BusinessCalendar()
