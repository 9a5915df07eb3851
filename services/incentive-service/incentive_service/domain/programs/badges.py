"""Badges and streaks: earned once, with the contribution that earned them."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from .definitions import BadgeRule
from .scoring import Contribution


@dataclass(frozen=True)
class BadgeEarned:
    badge_id: str
    participant: str
    earned_by: str  # the fact (activity or event) that completed it
    at: datetime

    @property
    def key(self) -> str:
        return f"badge:{self.badge_id}:{self.participant}"


def badges_earned(rules: Iterable[BadgeRule], participant: str, contributions: Iterable[Contribution],
                  timezone: str = "UTC") -> list[BadgeEarned]:
    """The badges `participant`'s counted contributions earn. Days are calendar days in `timezone` (a call at
    23:30 in Berlin is that day's call, not the next one's)."""
    zone = ZoneInfo(timezone)
    mine = sorted((c for c in contributions if c.participant == participant), key=lambda c: (c.at, c.fact_key))
    out = []
    for rule in rules:
        relevant = [c for c in mine if c.behaviour == rule.behaviour]
        earning = _streak_end(relevant, rule.count, zone) if rule.kind == "streak" else _nth(relevant, rule.count)
        if earning is not None:
            out.append(BadgeEarned(rule.id, participant, earning.fact_key, earning.at))
    return out


def _nth(contributions: list[Contribution], n: int) -> Contribution | None:
    return contributions[n - 1] if len(contributions) >= n else None


def _streak_end(contributions: list[Contribution], days: int, zone: ZoneInfo) -> Contribution | None:
    """The first contribution of the day that completes the first run of `days` consecutive days."""
    first_of_day: dict[date, Contribution] = {}
    for c in contributions:
        first_of_day.setdefault(c.at.astimezone(zone).date(), c)
    run, previous = 0, None
    for day in sorted(first_of_day):
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        previous = day
        if run >= days:
            return first_of_day[day]
    return None
