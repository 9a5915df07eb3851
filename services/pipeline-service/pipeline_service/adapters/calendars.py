"""The org's business calendar: reading and writing `business_calendars` (every query about it is here)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.calendar import MONDAY_TO_FRIDAY_CALENDAR, BusinessCalendar
from salesflow_shared.inbox import dialect_insert

from .orm import business_calendars

_CACHE_KEY = "business_calendars"  # per session (one request or one handler transaction): read once per org


@dataclass(frozen=True)
class StoredCalendar:
    calendar: BusinessCalendar
    version: int  # 0: never set (Monday to Friday, no holidays)
    updated_at: datetime | None


_LOAD = sa.select(business_calendars).where(business_calendars.c.org_id == sa.bindparam("org"))
# For another module's statement that reads the org's calendar along (an outer join on the org): its columns,
# named apart, then `remember_read` with the row.
READ_ALONG_PREFIX = "calendar__"
READ_ALONG = [c.label(READ_ALONG_PREFIX + c.name) for c in business_calendars.columns]


def _stored(row: Mapping[Any, Any] | None) -> StoredCalendar:
    if row is None:
        return StoredCalendar(MONDAY_TO_FRIDAY_CALENDAR, 0, None)
    return StoredCalendar(BusinessCalendar.of(row["working_days"], row["country"], row["subdivision"],
                                              (date.fromisoformat(d) for d in row["days_off"])),
                          row["version"], row["updated_at"])


def remember_read(session: AsyncSession, org_id: str, row: Mapping[Any, Any]) -> None:
    """The org's calendar as read along by another statement (`READ_ALONG`): `load` then reads it no more."""
    found = None if row[READ_ALONG_PREFIX + "org_id"] is None else {
        c.name: row[READ_ALONG_PREFIX + c.name] for c in business_calendars.columns}
    session.info.setdefault(_CACHE_KEY, {}).setdefault(org_id, _stored(found))


async def load(session: AsyncSession, org_id: str) -> StoredCalendar:
    cached: dict[str, StoredCalendar] = session.info.setdefault(_CACHE_KEY, {})
    if org_id not in cached:
        cached[org_id] = _stored((await session.execute(_LOAD, {"org": org_id})).mappings().first())
    return cached[org_id]


async def save(session: AsyncSession, org_id: str, calendar: BusinessCalendar, version: int,
               now: datetime) -> None:
    values = {"working_days": sorted(calendar.working_days), "country": calendar.country,
              "subdivision": calendar.subdivision, "days_off": sorted(d.isoformat() for d in calendar.days_off),
              "version": version, "updated_at": now}
    insert = dialect_insert(session)(business_calendars).values(org_id=org_id, **values)
    await session.execute(insert.on_conflict_do_update(index_elements=["org_id"], set_=values))
    session.info.setdefault(_CACHE_KEY, {})[org_id] = StoredCalendar(calendar, version, now)
