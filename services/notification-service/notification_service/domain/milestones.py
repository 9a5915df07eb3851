"""Milestone rules: which congratulations a deal event or a reached quota earns, each with a key that makes it
fire once."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

MilestoneKind = Literal["deal_won", "stage_exit_above_value", "first_deal_of_quarter", "quota_reached"]
MILESTONE_KINDS: tuple[str, ...] = ("deal_won", "stage_exit_above_value", "first_deal_of_quarter", "quota_reached")


@dataclass(frozen=True)
class MilestoneRule:
    id: str
    name: str
    kind: MilestoneKind
    stage_id: str | None = None
    min_value: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class DealFact:
    """A deal moved: `won` (at `at`) or `left_stage` (it left `from_stage_id`)."""

    kind: Literal["won", "left_stage"]
    lead_id: str
    rep_id: str | None
    value: Decimal | None
    currency: str | None
    at: datetime
    from_stage_id: str | None = None


@dataclass(frozen=True)
class QuotaFact:
    """A rep's quota was reached (QuotaReached from metrics-service)."""

    quota_id: str
    rep_id: str
    amount: Decimal
    currency: str


def quarter_of(moment: datetime) -> str:
    return f"{moment.year}Q{(moment.month - 1) // 3 + 1}"


def _value_ok(rule: MilestoneRule, value: Decimal | None, currency: str | None) -> bool:
    if rule.min_value is None:
        return True
    if value is None:
        return False
    if rule.currency and currency and rule.currency.upper() != currency.upper():
        return False
    return value >= rule.min_value


def fired(rules: list[MilestoneRule], fact: DealFact) -> list[tuple[MilestoneRule, str]]:
    """The rules this fact satisfies, each with its once-key (the same fact or quarter never fires twice)."""
    out: list[tuple[MilestoneRule, str]] = []
    for rule in rules:
        if rule.kind == "deal_won" and fact.kind == "won" and _value_ok(rule, fact.value, fact.currency):
            out.append((rule, f"milestone:{rule.id}:lead:{fact.lead_id}"))
        elif (rule.kind == "stage_exit_above_value" and fact.kind == "left_stage"
              and fact.from_stage_id is not None and fact.from_stage_id == rule.stage_id
              and _value_ok(rule, fact.value, fact.currency)):
            out.append((rule, f"milestone:{rule.id}:lead:{fact.lead_id}"))
        elif (rule.kind == "first_deal_of_quarter" and fact.kind == "won" and fact.rep_id
              and _value_ok(rule, fact.value, fact.currency)):
            out.append((rule, f"milestone:{rule.id}:rep:{fact.rep_id}:{quarter_of(fact.at)}"))
    return out


def fired_for_quota(rules: list[MilestoneRule], fact: QuotaFact) -> list[tuple[MilestoneRule, str]]:
    """The quota_reached rules a reached quota satisfies (`min_value`: only quotas of at least that amount),
    each with its once-key: a quota fires a rule once."""
    return [(rule, f"milestone:{rule.id}:quota:{fact.quota_id}") for rule in rules
            if rule.kind == "quota_reached" and _value_ok(rule, fact.amount, fact.currency)]
