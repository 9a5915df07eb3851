"""The rep directory as plain values: reps, teams, territories, availability and territory resolution.

No I/O and no clock: every function that needs the time takes `now`.
Conventions: tier 1 is the most senior tier; capacity is the maximum number of open leads (None = no limit);
out-of-office periods are half-open [start, end); working hours are windows in the rep's own time zone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Why a rep was not chosen (stored in decisions; stable strings clients may rely on).
INACTIVE = "inactive"
OUT_OF_OFFICE = "out_of_office"
AT_CAPACITY = "at_capacity"
OUTSIDE_WORKING_HOURS = "outside_working_hours"
PRODUCT_LINE_NOT_COVERED = "product_line_not_covered"
LANGUAGE_NOT_SPOKEN = "language_not_spoken"
NOT_IN_DIRECTORY = "not_in_directory"


@dataclass(frozen=True)
class WorkingWindow:
    """Hours on the given days, in the rep's time zone. An end at or before the start is an overnight
    window (a night shift, 22:00-06:00): it starts on the listed day and runs into the next morning."""

    days: tuple[str, ...]
    start: time
    end: time

    def covers(self, day: str, previous_day: str, clock: time) -> bool:
        if self.start < self.end:
            return day in self.days and self.start <= clock < self.end
        return (day in self.days and clock >= self.start) or (previous_day in self.days and clock < self.end)


@dataclass(frozen=True)
class Absence:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Rep:
    id: str  # the rep's user id (the JWT `sub`), also the owner_id other services see
    name: str
    email: str
    active: bool = True
    tier: int = 3
    product_lines: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    capacity: int | None = None
    timezone: str = "UTC"
    working_hours: tuple[WorkingWindow, ...] = ()
    out_of_office: tuple[Absence, ...] = ()


@dataclass(frozen=True)
class PostcodeRange:
    start: str
    end: str
    country: str | None = None


@dataclass(frozen=True)
class Territory:
    id: str
    name: str
    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    postcode_ranges: tuple[PostcodeRange, ...] = ()
    rep_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    member_ids: tuple[str, ...] = field(default_factory=tuple)
    lead_rep_id: str | None = None


# ------------------------------------------------------------------ validation helpers (pure)
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def parse_hhmm(value: str) -> time | None:
    match = _HHMM.match(value or "")
    return time(int(match.group(1)), int(match.group(2))) if match else None


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def valid_country(code: str) -> bool:
    return bool(_COUNTRY.match(code or ""))


def normalise_postcode(value: str | None) -> str:
    return re.sub(r"[\s-]", "", (value or "")).upper()


def postcode_key(value: str) -> tuple[int, int | str]:
    """Numeric postcodes compare as numbers, others as normalised text."""
    normal = normalise_postcode(value)
    return (0, int(normal)) if normal.isdigit() else (1, normal)


def postcode_in_range(postcode: str, start: str, end: str) -> bool:
    """Inclusive on both ends ("10000".."19999"); a numeric postcode never falls in a text range."""
    value, low, high = postcode_key(postcode), postcode_key(start), postcode_key(end)
    if not (value[0] == low[0] == high[0]):
        return False
    return low <= value <= high


# ------------------------------------------------------------------ availability
def unavailability(rep: Rep, now: datetime, open_leads: int) -> str | None:
    """The hard reason a rep can never be chosen right now, or None."""
    if not rep.active:
        return INACTIVE
    if any(a.start <= now < a.end for a in rep.out_of_office):
        return OUT_OF_OFFICE
    if rep.capacity is not None and open_leads >= rep.capacity:
        return AT_CAPACITY
    return None


def in_working_hours(rep: Rep, now: datetime) -> bool:
    """True when `now` falls in one of the rep's windows (a rep without windows is always in hours)."""
    if not rep.working_hours:
        return True
    local = now.astimezone(ZoneInfo(rep.timezone or "UTC"))
    day, previous_day = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    clock = local.time().replace(tzinfo=None)
    return any(w.covers(day, previous_day, clock) for w in rep.working_hours)


# ------------------------------------------------------------------ territories
def territory_specificity(territory: Territory, country: str | None, region: str | None,
                          postcode: str | None) -> int | None:
    """How specifically a territory matches a lead's location (higher wins), or None if it does not."""
    if not (territory.countries or territory.regions or territory.postcode_ranges):
        return None
    score = 0
    country_u = (country or "").strip().upper()
    if territory.countries:
        if country_u not in territory.countries:
            return None
        score += 1
    if territory.regions:
        if (region or "").strip().casefold() not in {r.casefold() for r in territory.regions}:
            return None
        score += 2
    if territory.postcode_ranges:
        if not postcode or not any(
                (r.country is None or r.country == country_u) and postcode_in_range(postcode, r.start, r.end)
                for r in territory.postcode_ranges):
            return None
        score += 4
    return score


def resolve_territory(territories: list[Territory] | tuple[Territory, ...], country: str | None,
                      region: str | None, postcode: str | None) -> Territory | None:
    """The most specific matching territory (postcode > region > country); ties go to the name, then id."""
    best: tuple[int, str, str] | None = None
    chosen: Territory | None = None
    for territory in territories:
        score = territory_specificity(territory, country, region, postcode)
        if score is None:
            continue
        key = (-score, territory.name, territory.id)
        if best is None or key < best:
            best, chosen = key, territory
    return chosen
