"""What a program (contest) is: its period, participants, scoring rules (versioned, frozen once started),
guards, format and rewards, and the checks that refuse a definition that makes no sense."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Literal

Behaviour = Literal["call", "meeting", "demo", "email", "proposal", "stage_advance", "deal_won"]
ACTIVITY_BEHAVIOURS: tuple[str, ...] = ("call", "meeting", "demo", "email", "proposal")
BEHAVIOURS: tuple[str, ...] = (*ACTIVITY_BEHAVIOURS, "stage_advance", "deal_won")

Format = Literal["race", "leaderboard", "milestones", "head_to_head", "team"]
FORMATS: tuple[str, ...] = ("race", "leaderboard", "milestones", "head_to_head", "team")


@dataclass(frozen=True)
class ScoringRule:
    """Points for one behaviour. Activities may require a minimum duration and an outcome (a call counts only
    when connected and long enough); a won deal earns `points` plus `points_per_value_unit` for each full
    `value_unit` of its value (in the program's currency)."""

    behaviour: Behaviour
    points: int = 0
    min_duration_seconds: int | None = None
    outcomes: tuple[str, ...] = ()
    points_per_value_unit: int = 0
    value_unit: Decimal = Decimal(1000)


@dataclass(frozen=True)
class Guards:
    """Anti-gaming settings. Duplicates of one activity never count twice whatever these say."""

    rep_logged_only: bool = True  # activities logged by a sequence or a form never count
    stage_revert_days: int = 7  # an advance undone (the lead back below that stage) within this many days: no points
    sandbag_last_days: int = 7  # a close date pushed past the end within the last days of the program is flagged


@dataclass(frozen=True)
class Reward:
    """What a place, a milestone or a team win pays: a badge, cash (a SPIFF line on the commission statement),
    or both."""

    badge: str | None = None
    cash: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Milestone:
    id: str
    name: str
    points: int
    reward: Reward = field(default_factory=Reward)


@dataclass(frozen=True)
class BadgeRule:
    """`streak`: `count` days in a row with at least one counted `behaviour`; `count`: the `count`-th counted
    `behaviour` in the program."""

    id: str
    name: str
    kind: Literal["streak", "count"]
    behaviour: Behaviour
    count: int


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Round:
    """One round of a head-to-head bracket: only points scored in [starts_at, ends_at) count for it."""

    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class RuleVersion:
    """The scoring rules in force from `effective_from` on. Version 1 starts with the program; a change after
    the start makes the next version, which scores only what happens from then on."""

    version: int
    effective_from: datetime
    rules: tuple[ScoringRule, ...]


@dataclass(frozen=True)
class ProgramDefinition:
    name: str
    format: Format
    starts_at: datetime
    ends_at: datetime
    versions: tuple[RuleVersion, ...]
    participants: tuple[str, ...] = ()  # rep ids; for a team format, every member of every team
    teams: tuple[Team, ...] = ()
    guards: Guards = field(default_factory=Guards)
    currency: str = "USD"
    target: int | None = None  # race: points to reach
    milestones: tuple[Milestone, ...] = ()
    place_rewards: tuple[Reward, ...] = ()  # [0] for 1st place (race: 1st to finish; team: each member of 1st team)
    badges: tuple[BadgeRule, ...] = ()
    rounds: tuple[Round, ...] = ()  # head_to_head
    team_scoring: Literal["sum", "average"] = "sum"
    hidden: bool = False  # test mode: scored, shown to managers only, no notification, no cash

    def rules_at(self, moment: datetime) -> RuleVersion:
        """The rule version in force at `moment` (the first version before the program starts)."""
        current = self.versions[0]
        for version in self.versions:
            if version.effective_from <= moment:
                current = version
        return current

    def team_of(self, rep_id: str) -> str | None:
        for team in self.teams:
            if rep_id in team.members:
                return team.id
        return None

    @cached_property
    def _participant_set(self) -> frozenset[str]:
        return frozenset(self.participants)

    def is_participant(self, rep_id: str | None) -> bool:
        # Asked for every fact scored: a set, not a scan of the hundreds of participants a program may have.
        return rep_id is not None and rep_id in self._participant_set

    def thresholds(self) -> tuple[int, ...]:
        """The point totals whose first crossing matters: the race target and every milestone."""
        values = {m.points for m in self.milestones}
        if self.target is not None:
            values.add(self.target)
        return tuple(sorted(values))


class RulesFrozen(ValueError):
    """The program has ended: its rules can no longer change."""


def revise_rules(definition: ProgramDefinition, rules: tuple[ScoringRule, ...], *, started: bool,
                 ended: bool, now: datetime) -> ProgramDefinition:
    """New scoring rules. Before the start they replace version 1; once started the rules in force stay frozen
    for what already happened and the change becomes the next version, effective now (the caller announces
    it); after the end nothing changes."""
    if ended:
        raise RulesFrozen("the program has ended; its rules are final")
    if not started:
        first = replace(definition.versions[0], rules=rules)
        return replace(definition, versions=(first,))
    latest = definition.versions[-1]
    nxt = RuleVersion(version=latest.version + 1, effective_from=max(now, latest.effective_from), rules=rules)
    return replace(definition, versions=(*definition.versions, nxt))


def validate_definition(d: ProgramDefinition) -> list[tuple[str, str]]:
    """(field, message) for everything that makes the program meaningless; empty when it is sound."""
    errors: list[tuple[str, str]] = []
    if d.ends_at <= d.starts_at:
        errors.append(("ends_at", "must be after starts_at"))
    if not d.versions or not d.versions[0].rules:
        errors.append(("rules", "at least one scoring rule is needed"))
    for version in d.versions:
        errors.extend(_rule_errors(version.rules))
    if d.format == "team":
        errors.extend(_team_errors(d.teams))
    elif not d.participants:
        errors.append(("participants", "at least one participant is needed"))
    if len(set(d.participants)) != len(d.participants):
        errors.append(("participants", "a participant is listed twice"))
    if d.format == "race" and (d.target is None or d.target <= 0):
        errors.append(("target", "a race needs a positive target"))
    if d.format == "milestones" and not d.milestones:
        errors.append(("milestones", "a milestone program needs at least one milestone"))
    points = [m.points for m in d.milestones]
    if any(p <= 0 for p in points) or len(set(points)) != len(points):
        errors.append(("milestones", "milestone points must be positive and distinct"))
    if len({m.id for m in d.milestones}) != len(d.milestones):
        errors.append(("milestones", "milestone ids must be distinct"))
    if d.format == "head_to_head":
        errors.extend(_bracket_errors(d))
    for i, reward in enumerate((*d.place_rewards, *(m.reward for m in d.milestones))):
        if reward.cash is not None and (reward.cash <= 0 or not reward.currency):
            errors.append(("rewards", f"reward {i}: cash must be positive and have a currency"))
    for badge in d.badges:
        if badge.count < 1:
            errors.append(("badges", f"{badge.id}: count must be at least 1"))
    if len({b.id for b in d.badges}) != len(d.badges):
        errors.append(("badges", "badge ids must be distinct"))
    return errors


def _rule_errors(rules: tuple[ScoringRule, ...]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for rule in rules:
        if rule.behaviour in seen:
            errors.append(("rules", f"{rule.behaviour} has two rules"))
        seen.add(rule.behaviour)
        if rule.points < 0 or rule.points_per_value_unit < 0:
            errors.append(("rules", f"{rule.behaviour}: points cannot be negative"))
        if rule.value_unit <= 0:
            errors.append(("rules", f"{rule.behaviour}: value_unit must be positive"))
        if rule.behaviour == "deal_won" and rule.points == 0 and rule.points_per_value_unit == 0:
            errors.append(("rules", "deal_won: give points or points_per_value_unit"))
    return errors


def _team_errors(teams: tuple[Team, ...]) -> list[tuple[str, str]]:
    if len(teams) < 2:
        return [("teams", "a team contest needs at least two teams")]
    members = [m for t in teams for m in t.members]
    errors = []
    if len(set(members)) != len(members):
        errors.append(("teams", "a rep can be in one team only"))
    if any(not t.members for t in teams):
        errors.append(("teams", "every team needs a member"))
    return errors


def _bracket_errors(d: ProgramDefinition) -> list[tuple[str, str]]:
    n = len(d.participants)
    if n < 2 or n & (n - 1):
        return [("participants", "a bracket needs 2, 4, 8, ... participants")]
    if len(d.rounds) != n.bit_length() - 1:
        return [("rounds", f"{n} participants play {n.bit_length() - 1} rounds")]
    previous_end = d.starts_at
    for rnd in d.rounds:
        if rnd.starts_at < previous_end or rnd.ends_at <= rnd.starts_at or rnd.ends_at > d.ends_at:
            return [("rounds", "rounds must follow one another inside the program's period")]
        previous_end = rnd.ends_at
    return []
