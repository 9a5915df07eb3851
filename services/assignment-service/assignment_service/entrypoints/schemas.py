"""Request and response bodies of the HTTP API (validation errors become 422 naming the field)."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator, model_validator

from salesflow_shared.clock import UtcDateTime
from salesflow_shared.contract import page_of

from ..domain.directory import DAYS, parse_hhmm, valid_country, valid_timezone

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# Surrounding blanks are dropped, so a blank value is empty: the schema says "not blank" (`\S` somewhere).
NOT_BLANK: dict = {"pattern": r"\S"}
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                 Field(json_schema_extra=NOT_BLANK)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
               Field(json_schema_extra=NOT_BLANK)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"
_EMAIL = re.compile(EMAIL_PATTERN)
HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
Country = Annotated[str, StringConstraints(pattern=r"^\s*[A-Za-z]{2}\s*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_nullable(*names: str) -> ConfigDict:
    """A PATCH body's config whose schema says `names` take no null: left out, a field stays as it is; sent
    as null it is refused (422), as the routes check, so a client is not told null is a value."""
    def drop_null(schema: dict[str, Any]) -> None:
        for name in names:
            prop = schema.get("properties", {}).get(name, {})
            options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
            if len(options) == 1 and len(prop["anyOf"]) == 2:
                del prop["anyOf"]
                prop.update(options[0])
    return ConfigDict(extra="forbid", json_schema_extra=drop_null)


def _unique(values: list[str] | None, what: str) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")
    return values


class WorkingWindowIn(Strict):
    days: list[Day] = Field(min_length=1)
    start: str = Field(pattern=HHMM_PATTERN, description="HH:MM in the rep's time zone")
    end: str = Field(pattern=HHMM_PATTERN, description="HH:MM; at or before start for an overnight window "
                                                        "(22:00-06:00 starts on the listed day, ends the next morning)")

    @model_validator(mode="after")
    def _check(self) -> WorkingWindowIn:
        start, end = parse_hhmm(self.start), parse_hhmm(self.end)
        if start is None or end is None:
            raise ValueError("start and end are HH:MM (00:00-23:59)")
        if start == end:
            raise ValueError("start and end must differ (an overnight window ends before it starts)")
        self.days = sorted(set(self.days), key=DAYS.index)
        return self


class AbsenceIn(Strict):
    start: datetime
    end: datetime
    note: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _check(self) -> AbsenceIn:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone offset (RFC 3339)")
        if self.start >= self.end:
            raise ValueError("end must be after start")
        return self


class _RepFields(Strict):
    name: Name | None = None
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    active: StrictBool | None = None
    tier: int | None = Field(default=None, ge=1, le=10, description="1 is the most senior tier")
    product_lines: list[Tag] | None = Field(default=None, max_length=100)
    languages: list[Tag] | None = Field(default=None, max_length=50)
    capacity: int | None = Field(default=None, ge=0, le=100_000, description="maximum open leads; null = no limit")
    timezone: str | None = None
    working_hours: list[WorkingWindowIn] | None = Field(default=None, max_length=50)
    out_of_office: list[AbsenceIn] | None = Field(default=None, max_length=200)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None and not valid_timezone(value):
            raise ValueError(f"unknown time zone '{value}' (use an IANA name such as Europe/Berlin)")
        return value

    @field_validator("product_lines", "languages")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value, "values")


class RepCreate(_RepFields):
    user_id: Id = Field(description="the rep's user id (the `sub` of their token); the rep's id")
    name: Name
    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    active: StrictBool = True
    tier: int = Field(default=3, ge=1, le=10, description="1 is the most senior tier")
    product_lines: list[Tag] = Field(default_factory=list, max_length=100)
    languages: list[Tag] = Field(default_factory=list, max_length=50)
    capacity: int | None = Field(default=None, ge=0, le=100_000)
    timezone: str = "UTC"
    working_hours: list[WorkingWindowIn] = Field(default_factory=list, max_length=50)
    out_of_office: list[AbsenceIn] = Field(default_factory=list, max_length=200)


class RepPatch(_RepFields):
    model_config = _not_nullable("name", "email", "active", "tier", "timezone", "product_lines", "languages",
                                 "working_hours", "out_of_office")


class RepOut(BaseModel):
    id: str
    user_id: str
    name: str
    email: str
    active: bool
    tier: int
    product_lines: list[str]
    languages: list[str]
    capacity: int | None
    timezone: str
    working_hours: list[dict[str, Any]]
    out_of_office: list[dict[str, Any]]
    open_leads: int = 0
    last_assigned_at: UtcDateTime | None = None
    version: int
    created_at: UtcDateTime
    updated_at: UtcDateTime


class TeamCreate(Strict):
    name: Name
    member_ids: list[Id] = Field(default_factory=list, max_length=1000,
                                 description="rep ids, in round-robin order")
    lead_rep_id: Id | None = None

    @field_validator("member_ids")
    @classmethod
    def _members(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value, "member_ids")


class TeamPatch(Strict):
    model_config = _not_nullable("name", "member_ids")
    name: Name | None = None
    member_ids: list[Id] | None = Field(default=None, max_length=1000)
    lead_rep_id: Id | None = None

    @field_validator("member_ids")
    @classmethod
    def _members(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value, "member_ids")


class TeamOut(BaseModel):
    id: str
    name: str
    member_ids: list[str]
    lead_rep_id: str | None
    version: int
    created_at: UtcDateTime
    updated_at: UtcDateTime


class PostcodeRangeIn(Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: str = Field(alias="from", min_length=1, max_length=20)
    end: str = Field(alias="to", min_length=1, max_length=20)
    country: Country | None = None

    @model_validator(mode="after")
    def _check(self) -> PostcodeRangeIn:
        from ..domain.directory import postcode_key
        if self.country is not None:
            self.country = self.country.upper()
            if not valid_country(self.country):
                raise ValueError("country is an ISO 3166-1 alpha-2 code such as DE")
        low, high = postcode_key(self.start), postcode_key(self.end)
        if low[0] != high[0]:
            raise ValueError("from and to must both be numeric or both be text")
        if low > high:
            raise ValueError("from must not be after to")
        return self


class _TerritoryFields(Strict):
    countries: list[Country] | None = Field(default=None, max_length=300)
    regions: list[Tag] | None = Field(default=None, max_length=500)
    postcode_ranges: list[PostcodeRangeIn] | None = Field(default=None, max_length=1000)
    rep_ids: list[Id] | None = Field(default=None, max_length=1000)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        upper = [c.strip().upper() for c in value]
        bad = [c for c in value if not valid_country(c.strip().upper())]
        if bad:
            raise ValueError(f"not ISO 3166-1 alpha-2 country codes: {', '.join(bad)}")
        return _unique(upper, "countries")

    @field_validator("rep_ids")
    @classmethod
    def _reps(cls, value: list[str] | None) -> list[str] | None:
        return _unique(value, "rep_ids")


class TerritoryCreate(_TerritoryFields):
    name: Name
    countries: list[Country] = Field(default_factory=list, max_length=300)
    regions: list[Tag] = Field(default_factory=list, max_length=500)
    postcode_ranges: list[PostcodeRangeIn] = Field(default_factory=list, max_length=1000)
    rep_ids: list[Id] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _some_area(self) -> TerritoryCreate:
        if not (self.countries or self.regions or self.postcode_ranges):
            raise ValueError("a territory needs countries, regions or postcode_ranges")
        return self


class TerritoryPatch(_TerritoryFields):
    model_config = _not_nullable("name", "countries", "regions", "postcode_ranges", "rep_ids")
    name: Name | None = None


class TerritoryOut(BaseModel):
    id: str
    name: str
    countries: list[str]
    regions: list[str]
    postcode_ranges: list[dict[str, Any]]
    rep_ids: list[str]
    version: int
    created_at: UtcDateTime
    updated_at: UtcDateTime


class RuleSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[dict[str, Any]] = Field(description="ordered rules; the last one is the fallback")


class SimulatedLeadIn(BaseModel):
    """A lead payload to simulate (the LeadSnapshot fields that rules read)."""

    model_config = ConfigDict(extra="ignore")
    lead_id: str | None = None
    country: str | None = None
    region: str | None = None
    postcode: str | None = None
    language: str | None = None
    product_line: str | None = None
    value: str | float | int | None = None
    currency: str | None = None
    source: str | None = None
    score: int | None = None
    status: str | None = "open"
    form_id: str | None = None
    company: dict[str, Any] = Field(default_factory=dict)
    utm: dict[str, str] = Field(default_factory=dict)
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class StageIn(Strict):
    stage_id: str | None = None
    stage_name: str | None = None
    pipeline_id: str | None = None


class SimulateIn(Strict):
    lead: SimulatedLeadIn
    trigger: Literal["lead_created", "stage_entry", "lead_won"] = "lead_created"
    stage: StageIn | None = None
    rules: list[dict[str, Any]] | None = Field(default=None, description="a draft rule set; default: the current one")
    at: datetime | None = Field(default=None, description="evaluate as of this time (default: now)")


class ManualAssignIn(Strict):
    lead_id: Id
    owner_id: Id
    team_id: Id | None = None
    note: str | None = Field(default=None, max_length=500)


class BulkReassignIn(Strict):
    team_id: Id
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"
    deactivate: StrictBool = Field(default=True, description="mark the departing rep inactive")
    note: str | None = Field(default=None, max_length=500)


# ------------------------------------------------------------------ answers (routing and decisions)
class RuleOut(BaseModel):
    """A routing rule as stored: conditions, the owner strategy, the pipeline it routes to."""

    id: str
    name: str
    triggers: list[str]
    conditions: list[dict[str, Any]]
    pipeline_id: str | None
    owner: dict[str, Any] = Field(description="{strategy, rep_id?, team_id?, territory_id?, weights?, ...}")
    reroute_on_update: bool
    fallback: bool


class RuleSetOut(BaseModel):
    version: int
    rules: list[RuleOut]
    created_by: str | None
    created_at: datetime | None


class RuleSetCheck(BaseModel):
    valid: bool
    rules: list[RuleOut]


class RuleSetVersionOut(BaseModel):
    version: int
    created_by: str | None
    created_at: datetime


class TerritoryRef(BaseModel):
    id: str
    name: str


class DecisionOut(BaseModel):
    """An assignment decision with its explanation: the rule and territory that matched, the candidates, who
    was skipped and why, and the owner chosen (null when nobody could take the lead)."""

    id: str | None
    lead_id: str
    trigger: str
    rule_set_version: int | None
    rule_id: str | None
    strategy: str | None
    pipeline_id: str | None
    territory_id: str | None
    owner_id: str | None
    previous_owner_id: str | None
    team_id: str | None
    reason: str | None
    decided_at: datetime | None
    decided_by: str | None
    source_event_id: str | None = None
    rule_name: str | None = None
    territory: TerritoryRef | None = None
    evaluations: list[dict[str, Any]] = []
    candidates: list[Any] = []
    skipped: list[dict[str, Any]] = []
    rotation: dict[str, Any] | None = None
    strategy_note: str | None = None
    owner_name: str | None = None
    simulated: bool | None = None
    draft: bool | None = None


class ReassignedLead(BaseModel):
    lead_id: str
    owner_id: str | None
    decision_id: str | None


class BulkReassignResult(BaseModel):
    rep_id: str
    team_id: str
    reassigned: int
    left_with_team: int
    items: list[ReassignedLead]


RepPage = page_of(RepOut)
TeamPage = page_of(TeamOut)
TerritoryPage = page_of(TerritoryOut)
RuleSetVersionPage = page_of(RuleSetVersionOut)
DecisionPage = page_of(DecisionOut)
