"""Templates for the common programs, so a manager launches one with a few parameters: a milestone ladder, a
monthly race, a team challenge. Each returns a full definition the manager may still adjust before starting."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from .definitions import (
    BadgeRule,
    Milestone,
    ProgramDefinition,
    Reward,
    RuleVersion,
    ScoringRule,
    Team,
)

# Behaviour over results: a connected call of 2 minutes or more, a meeting held, a stage advance, and a won deal
# worth 20 points plus 1 per 1,000 of its value.
DEFAULT_RULES: tuple[ScoringRule, ...] = (
    ScoringRule("call", points=3, min_duration_seconds=120, outcomes=("connected",)),
    ScoringRule("meeting", points=10),
    ScoringRule("stage_advance", points=5),
    ScoringRule("deal_won", points=20, points_per_value_unit=1, value_unit=Decimal(1000)),
)
DEFAULT_BADGES: tuple[BadgeRule, ...] = (
    BadgeRule("call-streak-5", "Five days in a row on the phone", "streak", "call", 5),
    BadgeRule("ten-meetings", "Ten meetings held", "count", "meeting", 10),
)
TEMPLATES: tuple[str, ...] = ("milestone-ladder", "monthly-race", "team-challenge")


def milestone_ladder(name: str, starts_at: datetime, ends_at: datetime, participants: tuple[str, ...], *,
                     steps: tuple[tuple[int, Decimal | None], ...] = ((50, None), (100, Decimal(50)),
                                                                     (200, Decimal(150))),
                     currency: str = "USD", rules: tuple[ScoringRule, ...] = DEFAULT_RULES,
                     hidden: bool = False) -> ProgramDefinition:
    """Everyone who climbs a step earns it: bronze, silver, gold, ... (a badge each; cash where given)."""
    names = ("bronze", "silver", "gold", "platinum", "diamond")
    milestones = tuple(
        Milestone(id=names[i] if i < len(names) else f"step-{i + 1}",
                  name=(names[i] if i < len(names) else f"step {i + 1}").capitalize(), points=points,
                  reward=Reward(badge=names[i] if i < len(names) else f"step-{i + 1}", cash=cash,
                                currency=currency if cash is not None else None))
        for i, (points, cash) in enumerate(steps))
    return ProgramDefinition(name=name, format="milestones", starts_at=starts_at, ends_at=ends_at,
                             versions=(RuleVersion(1, starts_at, rules),), participants=participants,
                             currency=currency, milestones=milestones, badges=DEFAULT_BADGES, hidden=hidden)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def monthly_race(name: str, year: int, month: int, participants: tuple[str, ...], *, target: int = 300,
                 prizes: tuple[Decimal, ...] = (Decimal(500), Decimal(250), Decimal(100)), currency: str = "USD",
                 rules: tuple[ScoringRule, ...] = DEFAULT_RULES, hidden: bool = False) -> ProgramDefinition:
    """First to `target` points in the calendar month wins; the next finishers take the smaller prizes."""
    starts_at, ends_at = month_bounds(year, month)
    places = tuple(Reward(badge="race-winner" if i == 0 else None, cash=prize, currency=currency)
                   for i, prize in enumerate(prizes))
    return ProgramDefinition(name=name, format="race", starts_at=starts_at, ends_at=ends_at,
                             versions=(RuleVersion(1, starts_at, rules),), participants=participants,
                             currency=currency, target=target, place_rewards=places, badges=DEFAULT_BADGES,
                             hidden=hidden)


def team_challenge(name: str, starts_at: datetime, ends_at: datetime, teams: tuple[Team, ...], *,
                   prize_per_member: Decimal = Decimal(100), currency: str = "USD",
                   scoring: Literal["sum", "average"] = "average", rules: tuple[ScoringRule, ...] = DEFAULT_RULES,
                   hidden: bool = False) -> ProgramDefinition:
    """Teams against teams; by default the average per member, so a big team has no head start. Each member of
    the winning team gets the prize."""
    participants = tuple(m for t in teams for m in t.members)
    return ProgramDefinition(name=name, format="team", starts_at=starts_at, ends_at=ends_at,
                             versions=(RuleVersion(1, starts_at, rules),), participants=participants,
                             teams=teams, currency=currency, team_scoring=scoring,
                             place_rewards=(Reward(badge="team-champion", cash=prize_per_member,
                                                   currency=currency),),
                             badges=DEFAULT_BADGES, hidden=hidden)
