"""Per-org scoring rules and their evaluation. The score keeps its breakdown so a rep can see why."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from salesflow_shared.currency import CurrencyCode

from .enrichment import EmailInsights
from .lead import SOURCES, is_valid_target
from .stored_lead import StoredLead


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldPresent(_Config):
    kind: Literal["field_present"]
    field: str

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        if not is_valid_target(value) or value == "contact.full_name":
            raise ValueError(f"unknown lead field {value!r}")
        return value


class EmailType(_Config):
    kind: Literal["email_type"]
    email_type: Literal["business", "free", "disposable", "role"]


class TitleKeywords(_Config):
    kind: Literal["title_keywords"]
    keywords: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1, max_length=100)


class CountryIn(_Config):
    kind: Literal["country_in"]
    countries: list[str] = Field(min_length=1, max_length=300)
    regions: list[str] = Field(default_factory=list)

    @field_validator("countries")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        out = [v.strip().upper() for v in value]
        bad = [v for v in out if len(v) != 2 or not v.isalpha()]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an ISO 3166-1 alpha-2 code")
        return out


class ValueBand(_Config):
    kind: Literal["value_band"]
    min: Decimal | None = Field(None, ge=0)
    max: Decimal | None = Field(None, ge=0)
    currency: CurrencyCode | None = None

    @model_validator(mode="after")
    def _band(self) -> ValueBand:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class SourceIn(_Config):
    kind: Literal["source_in"]
    sources: list[str] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in SOURCES]
        if bad:
            raise ValueError(f"unknown source {bad[0]!r}; one of {', '.join(SOURCES)}")
        return value


RuleConfig = Annotated[FieldPresent | EmailType | TitleKeywords | CountryIn | ValueBand | SourceIn,
                       Field(discriminator="kind")]
RULE_CONFIG = TypeAdapter(RuleConfig)


@dataclass(frozen=True)
class ScoringRule:
    id: str
    name: str
    points: int
    config: Any  # one of the models above


@dataclass(frozen=True)
class ScoreLine:
    rule_id: str
    name: str
    points: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "name": self.name, "points": self.points, "reason": self.reason}


@dataclass(frozen=True)
class ScoreResult:
    score: int
    breakdown: list[ScoreLine]


def _matches(config: Any, lead: StoredLead, insights: EmailInsights | None) -> str | None:
    """Why the rule applies to the lead, or None."""
    if isinstance(config, FieldPresent):
        value = lead.value_at(config.field)
        return f"{config.field} is present" if value not in (None, "", {}, []) else None
    if isinstance(config, EmailType):
        if insights is None:
            return None
        kind = config.email_type
        hit = {"business": insights.is_business, "free": insights.is_free_mail,
               "disposable": insights.is_disposable, "role": insights.is_role_address}[kind]
        return f"{kind} email address ({insights.domain})" if hit else None
    if isinstance(config, TitleKeywords):
        title = (lead.contact.title or "").lower()
        for keyword in config.keywords:
            if keyword.lower() in title:
                return f"title contains {keyword!r}"
        return None
    if isinstance(config, CountryIn):
        country = (lead.country or "").upper()
        if country not in config.countries:
            return None
        if config.regions:
            region = (lead.region or "").lower()
            if region not in {r.lower() for r in config.regions}:
                return None
            return f"territory fit: {country}/{lead.region}"
        return f"country fit: {country}"
    if isinstance(config, ValueBand):
        value = lead.value
        if value is None:
            return None
        if config.currency and lead.currency != config.currency:
            return None
        if config.min is not None and value < config.min:
            return None
        if config.max is not None and value > config.max:
            return None
        return f"value {value} in band {config.min or 0}..{config.max if config.max is not None else '∞'}"
    if isinstance(config, SourceIn):
        return f"source {lead.source}" if lead.source in config.sources else None
    return None


def score_lead(lead: StoredLead, insights: EmailInsights | None, rules: list[ScoringRule]) -> ScoreResult:
    lines = []
    for rule in rules:
        reason = _matches(rule.config, lead, insights)
        if reason is not None:
            lines.append(ScoreLine(rule.id, rule.name, rule.points, reason))
    return ScoreResult(sum(line.points for line in lines), lines)
