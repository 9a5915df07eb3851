"""Which facts earn points, and how many, with the anti-gaming guards.

A lead's facts (its activities, stage moves, wins and reopenings) are scored together and only together: the
points a lead gives are a pure function of the *set* of its facts. So a redelivered event (same key) adds
nothing, and events arriving out of order give the same points once they have all arrived — the store keeps
the facts, and each new fact of a lead re-scores that lead alone.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from .definitions import ACTIVITY_BEHAVIOURS, ProgramDefinition, ScoringRule

FactKind = Literal["activity", "stage", "won", "reopened"]
# The most one fact can earn: a huge deal at a generous rate must not outgrow every other behaviour (nor a column).
MAX_FACT_POINTS = 1_000_000_000


@dataclass(frozen=True)
class Fact:
    """Something that happened to a lead, as the program needs it. `key` identifies the happening (the
    activity id, or the event id): seen twice, it is one fact. `seq` orders a lead's facts at the same instant
    (the event's subject_version)."""

    key: str
    kind: FactKind
    lead_id: str
    rep_id: str | None
    at: datetime
    seq: int = 0
    activity_kind: str | None = None
    duration_seconds: int | None = None
    outcome: str | None = None
    source: str = "rep"
    stage_id: str | None = None
    stage_position: int | None = None
    from_stage_position: int | None = None
    value: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Contribution:
    """Points one fact earned a participant, under a rule version."""

    fact_key: str
    participant: str
    behaviour: str
    points: int
    at: datetime
    rule_version: int


@dataclass(frozen=True)
class Excluded:
    """A fact that earned nothing, and why (shown to the rep who asks why a call did not count)."""

    fact_key: str
    reason: str


@dataclass(frozen=True)
class LeadScore:
    contributions: tuple[Contribution, ...]
    excluded: tuple[Excluded, ...]


def score_lead(program: ProgramDefinition, facts: Iterable[Fact],
               rates: Mapping[str, Decimal] | None = None) -> LeadScore:
    """The points all of one lead's facts earn in `program`. `rates[c]` converts an amount in currency `c`
    into the program's currency (a won deal in a currency without a rate earns its fixed points only)."""
    unique = {f.key: f for f in facts}
    ordered = sorted(unique.values(), key=lambda f: (f.at, f.seq, f.key))
    contributions: list[Contribution] = []
    excluded: list[Excluded] = []
    _score_activities(program, [f for f in ordered if f.kind == "activity"], contributions, excluded)
    _score_stages(program, [f for f in ordered if f.kind == "stage"], contributions, excluded)
    _score_win(program, [f for f in ordered if f.kind in ("won", "reopened")], rates or {},
               contributions, excluded)
    return LeadScore(tuple(contributions), tuple(excluded))


def _in_period(program: ProgramDefinition, fact: Fact) -> bool:
    return program.starts_at <= fact.at < program.ends_at


def _rule(program: ProgramDefinition, behaviour: str, at: datetime) -> tuple[ScoringRule | None, int]:
    version = program.rules_at(at)
    return next((r for r in version.rules if r.behaviour == behaviour), None), version.version


def _eligible(program: ProgramDefinition, fact: Fact) -> str | None:
    """Why a fact cannot count for anyone, or None when its rep and time qualify."""
    if not _in_period(program, fact):
        return "outside the program's period"
    if not program.is_participant(fact.rep_id):
        return "not by a participant"
    return None


def _score_activities(program: ProgramDefinition, facts: list[Fact], out: list[Contribution],
                      excluded: list[Excluded]) -> None:
    seen: set[tuple[str | None, str | None, datetime]] = set()
    for fact in facts:
        # The same call logged twice (same lead, kind, rep and minute) is one call, whatever its ids.
        natural = (fact.activity_kind, fact.rep_id, fact.at.replace(second=0, microsecond=0))
        reason = _eligible(program, fact) or _activity_refusal(program, fact)
        if reason is None and natural in seen:
            reason = "duplicate of an activity already counted"
        if reason is not None:
            excluded.append(Excluded(fact.key, reason))
            continue
        seen.add(natural)
        rule, version = _rule(program, fact.activity_kind or "", fact.at)
        assert rule is not None and fact.rep_id is not None  # checked by _activity_refusal / _eligible
        out.append(Contribution(fact.key, fact.rep_id, rule.behaviour, rule.points, fact.at, version))


def _activity_refusal(program: ProgramDefinition, fact: Fact) -> str | None:
    if fact.activity_kind not in ACTIVITY_BEHAVIOURS:
        return "not a scored behaviour"
    rule, _ = _rule(program, fact.activity_kind, fact.at)
    if rule is None:
        return f"{fact.activity_kind} earns no points in this program"
    if program.guards.rep_logged_only and fact.source != "rep":
        return f"logged by {fact.source}, not by the rep"
    if rule.min_duration_seconds is not None and (fact.duration_seconds or 0) < rule.min_duration_seconds:
        return f"shorter than {rule.min_duration_seconds} s"
    if rule.outcomes and (fact.outcome or "") not in rule.outcomes:
        return f"outcome {fact.outcome!r} is not one of {', '.join(rule.outcomes)}"
    return None


def _score_stages(program: ProgramDefinition, facts: list[Fact], out: list[Contribution],
                  excluded: list[Excluded]) -> None:
    window = timedelta(days=program.guards.stage_revert_days)
    previous: int | None = None
    counted_stages: set[str | None] = set()
    for i, fact in enumerate(facts):
        position = fact.stage_position if fact.stage_position is not None else 0
        start = fact.from_stage_position if fact.from_stage_position is not None else previous
        previous = position
        if start is None or position <= start:
            continue  # an entry or a move back: never points
        reason = _eligible(program, fact)
        if reason is None and _stage_rule(program, fact) is None:
            reason = "stage advances earn no points in this program"
        if reason is None and any(later.at <= fact.at + window and (later.stage_position or 0) < position
                                  for later in facts[i + 1:]):
            reason = f"reverted within {program.guards.stage_revert_days} days"
        if reason is None and fact.stage_id in counted_stages:
            reason = "this stage was already counted for this lead"
        if reason is not None:
            excluded.append(Excluded(fact.key, reason))
            continue
        counted_stages.add(fact.stage_id)
        rule, version = _rule(program, "stage_advance", fact.at)
        assert rule is not None and fact.rep_id is not None
        out.append(Contribution(fact.key, fact.rep_id, "stage_advance", rule.points, fact.at, version))


def _stage_rule(program: ProgramDefinition, fact: Fact) -> ScoringRule | None:
    return _rule(program, "stage_advance", fact.at)[0]


def _score_win(program: ProgramDefinition, facts: list[Fact], rates: Mapping[str, Decimal],
               out: list[Contribution], excluded: list[Excluded]) -> None:
    """A deal is won once: only its latest win counts, and not at all when it was reopened after it."""
    if not facts:
        return
    for earlier in facts[:-1]:
        if earlier.kind == "won":
            excluded.append(Excluded(earlier.key, "reopened afterwards"))
    last = facts[-1]
    if last.kind != "won":
        return
    rule, version = _rule(program, "deal_won", last.at)
    reason = _eligible(program, last) or (None if rule else "won deals earn no points in this program")
    if reason is not None:
        excluded.append(Excluded(last.key, reason))
        return
    assert rule is not None and last.rep_id is not None
    points = min(rule.points + rule.points_per_value_unit * _value_units(program, rule, last, rates), MAX_FACT_POINTS)
    out.append(Contribution(last.key, last.rep_id, "deal_won", points, last.at, version))


def _value_units(program: ProgramDefinition, rule: ScoringRule, fact: Fact, rates: Mapping[str, Decimal]) -> int:
    if fact.value is None or rule.points_per_value_unit == 0:
        return 0
    currency = (fact.currency or program.currency).upper()
    if currency == program.currency.upper():
        value = fact.value
    elif currency in rates:
        value = fact.value * rates[currency]
    else:
        return 0
    return int((value / rule.value_unit).to_integral_value(rounding=ROUND_FLOOR))


# ---------------------------------------------------------------- sandbagging


@dataclass(frozen=True)
class SandbagFlag:
    lead_id: str
    rep_id: str | None
    changed_at: datetime
    previous_close: date
    new_close: date
    reason: str


def sandbagging_flag(program: ProgramDefinition, *, lead_id: str, rep_id: str | None, changed_at: datetime,
                     previous_close: date | None, new_close: date | None) -> SandbagFlag | None:
    """A deal expected to close inside the program, pushed past its end during its last days, is flagged:
    the rep may be holding it back for the next contest (or the next period)."""
    if previous_close is None or new_close is None or program.guards.sandbag_last_days <= 0:
        return None
    end_day = program.ends_at.date()
    last_days_from = program.ends_at - timedelta(days=program.guards.sandbag_last_days)
    if not (last_days_from <= changed_at < program.ends_at):
        return None
    if previous_close < end_day <= new_close and previous_close >= program.starts_at.date():
        return SandbagFlag(lead_id, rep_id, changed_at, previous_close, new_close,
                           f"expected close moved from {previous_close} to {new_close}, past the program's end, "
                           f"in its last {program.guards.sandbag_last_days} days")
    return None
