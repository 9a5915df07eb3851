"""Owner strategies: who gets a lead among the candidates, and why the others did not.

Pure: the caller loads the candidates (with their open-lead counts) and the rotation state, calls
`select_owner`, and persists the returned state under a row lock so replicas never take the same slot.

Filtering happens in two passes. Hard reasons (inactive, out of office, at capacity, and when the rule asks
for it product line / language) always exclude a rep. Outside working hours is soft: reps in hours are
preferred, but when every otherwise available rep is outside hours one of them still gets the lead (a lead
arriving at night is not left unowned); the decision says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .directory import (
    LANGUAGE_NOT_SPOKEN,
    NOT_IN_DIRECTORY,
    OUTSIDE_WORKING_HOURS,
    PRODUCT_LINE_NOT_COVERED,
    Rep,
    in_working_hours,
    unavailability,
)

SPECIFIC_REP = "specific_rep"
ROUND_ROBIN = "round_robin"
WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
LEAST_LOADED = "least_loaded"
BEST_TIER_FIRST = "best_tier_first"
TERRITORY_REPS = "territory_reps"
STRATEGIES = (SPECIFIC_REP, ROUND_ROBIN, WEIGHTED_ROUND_ROBIN, LEAST_LOADED, BEST_TIER_FIRST, TERRITORY_REPS)
ROTATING = (ROUND_ROBIN, WEIGHTED_ROUND_ROBIN, TERRITORY_REPS)

_EPOCH = datetime.min


@dataclass(frozen=True)
class Candidate:
    rep: Rep
    open_leads: int = 0
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class RotationState:
    position: int = 0  # how many slots this rotation has handed out so far
    credits: dict[str, int] = field(default_factory=dict)  # smooth weighted round robin's running weights


@dataclass(frozen=True)
class OwnerRequest:
    strategy: str
    member_ids: tuple[str, ...]  # the candidate pool, in rotation order
    weights: dict[str, int] = field(default_factory=dict)
    respect_working_hours: bool = True
    match_product_line: bool = False
    match_language: bool = False


@dataclass
class OwnerChoice:
    rep_id: str | None
    candidates: list[str]
    skipped: list[dict[str, str]]
    note: str
    rotation: dict[str, Any] | None = None
    new_state: RotationState | None = None


def _casefolded(values: tuple[str, ...]) -> set[str]:
    return {v.casefold() for v in values}


def _filter(request: OwnerRequest, pool: dict[str, Candidate], lead: dict[str, Any],
            now: datetime) -> tuple[list[str], list[dict[str, str]], str]:
    """The eligible member ids (in order), the skipped ones with reasons, and a note."""
    skipped: list[dict[str, str]] = []
    available: list[str] = []
    product_line, language = lead.get("product_line"), lead.get("language")
    for rep_id in request.member_ids:
        candidate = pool.get(rep_id)
        if candidate is None:
            skipped.append({"rep_id": rep_id, "reason": NOT_IN_DIRECTORY})
            continue
        reason = unavailability(candidate.rep, now, candidate.open_leads)
        if reason is None and request.match_product_line and product_line and candidate.rep.product_lines \
                and str(product_line).casefold() not in _casefolded(candidate.rep.product_lines):
            reason = PRODUCT_LINE_NOT_COVERED
        if reason is None and request.match_language and language and candidate.rep.languages \
                and str(language).casefold() not in _casefolded(candidate.rep.languages):
            reason = LANGUAGE_NOT_SPOKEN
        if reason is not None:
            skipped.append({"rep_id": rep_id, "reason": reason})
        else:
            available.append(rep_id)
    if not request.respect_working_hours:
        return available, skipped, ""
    in_hours = [r for r in available if in_working_hours(pool[r].rep, now)]
    if in_hours:
        skipped.extend({"rep_id": r, "reason": OUTSIDE_WORKING_HOURS} for r in available if r not in in_hours)
        return in_hours, skipped, ""
    note = "every available rep is outside working hours; chose among them anyway" if available else ""
    return available, skipped, note


def counts_matter(strategy: str, capacities: list[int | None]) -> bool:
    """Whether the candidates' open-lead counts can change the choice or what it says: the ranked strategies
    order by them and name the chosen rep's, and a rep with a capacity is skipped at it; a rotation or a
    named rep without capacities never looks at them."""
    return strategy in (LEAST_LOADED, BEST_TIER_FIRST) or any(capacity is not None for capacity in capacities)


def select_owner(request: OwnerRequest, pool: dict[str, Candidate], lead: dict[str, Any], now: datetime,
                 state: RotationState | None = None) -> OwnerChoice:
    state = state or RotationState()
    eligible, skipped, note = _filter(request, pool, lead, now)
    candidates = list(request.member_ids)
    if not eligible:
        why = ", ".join(f"{s['rep_id']}: {s['reason']}" for s in skipped) or "no candidates"
        return OwnerChoice(None, candidates, skipped, f"no available rep ({why})")
    strategy = request.strategy
    if strategy in (ROUND_ROBIN, TERRITORY_REPS):
        choice = _round_robin(request.member_ids, eligible, state)
    elif strategy == WEIGHTED_ROUND_ROBIN:
        choice = _weighted(request, eligible, state)
    elif strategy == LEAST_LOADED:
        choice = _ranked(eligible, pool, request.member_ids, by_tier=False)
    elif strategy == BEST_TIER_FIRST:
        choice = _ranked(eligible, pool, request.member_ids, by_tier=True)
    elif strategy == SPECIFIC_REP:
        choice = OwnerChoice(eligible[0], [], [], "the rule names this rep")
    else:
        raise ValueError(f"unknown strategy {strategy}")
    choice.candidates, choice.skipped = candidates, skipped
    if note:
        choice.note = f"{choice.note}; {note}"
    return choice


def _round_robin(members: tuple[str, ...], eligible: list[str], state: RotationState) -> OwnerChoice:
    """The next member after the pointer who is eligible; skipped members lose this turn only."""
    allowed = set(eligible)
    count = len(members)
    for step in range(count):
        slot = (state.position + step) % count
        if members[slot] in allowed:
            after = state.position + step + 1
            return OwnerChoice(members[slot], [], [], f"round robin slot {slot + 1} of {count}",
                               rotation={"position": state.position, "slot": slot, "next_position": after},
                               new_state=RotationState(after, dict(state.credits)))
    raise AssertionError("an eligible rep is always a member")


def _weighted(request: OwnerRequest, eligible: list[str], state: RotationState) -> OwnerChoice:
    """Smooth weighted round robin (as in nginx) over the eligible reps: exact shares per cycle, spread out."""
    credits = {k: v for k, v in state.credits.items() if k in request.weights}
    weighted = [r for r in eligible if request.weights.get(r, 0) > 0]
    if not weighted:
        return OwnerChoice(None, [], [], "no eligible rep has a weight above zero")
    total = sum(request.weights[r] for r in weighted)
    for rep_id in weighted:
        credits[rep_id] = credits.get(rep_id, 0) + request.weights[rep_id]
    order = {r: i for i, r in enumerate(request.member_ids)}
    chosen = max(weighted, key=lambda r: (credits[r], -order.get(r, 0)))
    credits[chosen] -= total
    share = f"{request.weights[chosen]}/{total}"
    return OwnerChoice(chosen, [], [], f"weighted round robin (weight {share} among eligible reps)",
                       rotation={"position": state.position, "next_position": state.position + 1,
                                 "credits_after": dict(credits)},
                       new_state=RotationState(state.position + 1, credits))


def _ranked(eligible: list[str], pool: dict[str, Candidate], members: tuple[str, ...], *,
            by_tier: bool) -> OwnerChoice:
    order = {r: i for i, r in enumerate(members)}

    def key(rep_id: str) -> tuple[Any, ...]:
        c = pool[rep_id]
        last = (c.last_assigned_at.replace(tzinfo=None) if c.last_assigned_at else _EPOCH)
        base = (c.open_leads, last, order[rep_id])
        return (c.rep.tier, *base) if by_tier else base

    chosen = min(eligible, key=key)
    c = pool[chosen]
    if by_tier:
        return OwnerChoice(chosen, [], [], f"best available tier ({c.rep.tier}), then fewest open leads "
                                           f"({c.open_leads})")
    return OwnerChoice(chosen, [], [], f"fewest open leads ({c.open_leads})")
