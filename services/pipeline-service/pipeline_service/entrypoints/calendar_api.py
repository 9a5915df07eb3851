"""The org's business calendar: `GET /v1/business-calendar` (anyone in the org), `PUT` (admins, If-Match)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal
from salesflow_shared.contract import returns
from salesflow_shared.preconditions import strong_etag

from ..adapters import calendars
from ..adapters.calendars import StoredCalendar
from ..service_layer.calendars import set_calendar, working_day_names
from .routes import IfMatch, now_of

router = APIRouter(prefix="/v1", tags=["business-calendar"])

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class BusinessCalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    working_days: list[Weekday] = Field(default=["monday", "tuesday", "wednesday", "thursday", "friday"],
                                        min_length=1, max_length=7)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$",
                                description="ISO 3166-1 alpha-2: its public holidays are days off")
    subdivision: str | None = Field(default=None, max_length=10,
                                    description="A state or region of `country` with holidays of its own, e.g. BY")
    days_off: list[date] = Field(default=[], max_length=400, description="The org's own days off")


class BusinessCalendarOut(BaseModel):
    working_days: list[Weekday]
    country: str | None
    subdivision: str | None
    days_off: list[date]
    version: int = Field(description="0 until an admin sets it (Monday to Friday, no holidays)")
    updated_at: datetime | None


def _answer(stored: StoredCalendar, response: Response) -> BusinessCalendarOut:
    response.headers["ETag"] = strong_etag(stored.version)
    calendar = stored.calendar
    return BusinessCalendarOut(working_days=working_day_names(calendar), country=calendar.country,
                               subdivision=calendar.subdivision, days_off=sorted(calendar.days_off),
                               version=stored.version, updated_at=stored.updated_at)


@router.get("/business-calendar", summary="The org's business calendar: working days, holidays, days off",
            operation_id="getBusinessCalendar", **returns(BusinessCalendarOut, etag=True))
async def get_business_calendar(principal: CurrentPrincipal, uow: UowDep, response: Response) -> BusinessCalendarOut:
    return _answer(await calendars.load(uow.session, principal.org_id), response)


@router.put("/business-calendar", summary="Set the org's business calendar (If-Match: \"0\" the first time)",
            description="Task due dates in business days count only the working days of this calendar: its "
                        "weekdays, minus the country's (and subdivision's) public holidays and the org's own days "
                        "off. Publishes BusinessCalendarSet.",
            operation_id="setBusinessCalendar", **returns(BusinessCalendarOut, etag=True))
async def put_business_calendar(body: BusinessCalendarIn, principal: AdminPrincipal, uow: UowDep,
                                context: ContextDep, response: Response,
                                if_match: IfMatch = None) -> BusinessCalendarOut:
    stored = await set_calendar(uow, principal.org_id, working_days=list(body.working_days), country=body.country,
                                subdivision=body.subdivision, days_off=body.days_off, if_match=if_match,
                                now=now_of(context))
    await uow.commit()
    return _answer(stored, response)
