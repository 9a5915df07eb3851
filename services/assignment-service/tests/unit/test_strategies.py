"""Owner strategies: fairness, weights, load, tiers, and who is skipped for which reason."""
from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from assignment_service.domain.directory import Absence, Rep, WorkingWindow, in_working_hours
from assignment_service.domain.strategies import (
    BEST_TIER_FIRST,
    LEAST_LOADED,
    ROUND_ROBIN,
    SPECIFIC_REP,
    WEIGHTED_ROUND_ROBIN,
    Candidate,
    OwnerRequest,
    RotationState,
    select_owner,
)

NOW = datetime(2030, 3, 6, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 UTC


def pool(*reps: Rep, loads: dict[str, int] | None = None) -> dict[str, Candidate]:
    loads = loads or {}
    return {r.id: Candidate(r, loads.get(r.id, 0)) for r in reps}


def rep(rep_id: str, **kw) -> Rep:
    return Rep(rep_id, f"Rep {rep_id}", f"{rep_id}@x.io", **kw)


def run(request: OwnerRequest, candidates: dict[str, Candidate], n: int, lead=None) -> Counter:
    state = RotationState()
    counts: Counter = Counter()
    for _ in range(n):
        choice = select_owner(request, candidates, lead or {}, NOW, state)
        counts[choice.rep_id] += 1
        state = choice.new_state or state
    return counts


def test_round_robin_over_seven_equal_reps_is_fair_over_1000_leads():
    ids = tuple(f"r{i}" for i in range(7))
    counts = run(OwnerRequest(ROUND_ROBIN, ids), pool(*(rep(i) for i in ids)), 1000)
    assert sum(counts.values()) == 1000 and set(counts) == set(ids)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_round_robin_records_slot_and_skips_unavailable_reps_with_reasons():
    reps = [rep("a"), rep("b", active=False),
            rep("c", out_of_office=(Absence(NOW - timedelta(days=1), NOW + timedelta(days=1)),)),
            rep("d", capacity=2), rep("e")]
    candidates = pool(*reps, loads={"d": 2})
    choice = select_owner(OwnerRequest(ROUND_ROBIN, ("a", "b", "c", "d", "e")), candidates, {}, NOW,
                          RotationState(position=1))
    assert choice.rep_id == "e"
    assert {s["rep_id"]: s["reason"] for s in choice.skipped} == {
        "b": "inactive", "c": "out_of_office", "d": "at_capacity"}
    assert choice.rotation == {"position": 1, "slot": 4, "next_position": 5}
    assert choice.candidates == ["a", "b", "c", "d", "e"]


def test_nobody_available_gives_no_owner_and_says_why():
    choice = select_owner(OwnerRequest(ROUND_ROBIN, ("a", "ghost")), pool(rep("a", active=False)), {}, NOW)
    assert choice.rep_id is None
    assert "a: inactive" in choice.note and "ghost: not_in_directory" in choice.note


def test_outside_working_hours_is_skipped_while_someone_is_in_hours_else_used_anyway():
    nine_to_five_tokyo = (WorkingWindow(("mon", "tue", "wed", "thu", "fri"), time(9), time(17)),)
    tokyo = rep("tokyo", timezone="Asia/Tokyo", working_hours=nine_to_five_tokyo)  # 19:00 there
    berlin = rep("berlin", timezone="Europe/Berlin", working_hours=nine_to_five_tokyo)  # 11:00 there
    choice = select_owner(OwnerRequest(ROUND_ROBIN, ("tokyo", "berlin")), pool(tokyo, berlin), {}, NOW)
    assert choice.rep_id == "berlin"
    assert choice.skipped == [{"rep_id": "tokyo", "reason": "outside_working_hours"}]
    only_tokyo = select_owner(OwnerRequest(ROUND_ROBIN, ("tokyo",)), pool(tokyo), {}, NOW)
    assert only_tokyo.rep_id == "tokyo" and "outside working hours" in only_tokyo.note
    ignoring = select_owner(OwnerRequest(ROUND_ROBIN, ("tokyo", "berlin"), respect_working_hours=False),
                            pool(tokyo, berlin), {}, NOW)
    assert ignoring.rep_id == "tokyo"


def test_an_overnight_window_runs_from_its_day_into_the_next_morning():
    night_shift = rep("night", timezone="Europe/Berlin",
                      working_hours=(WorkingWindow(("mon", "fri"), time(22), time(6)),))
    berlin = ZoneInfo("Europe/Berlin")

    def at(day: int, hour: int, minute: int = 0) -> datetime:  # 2026-01-05 is a Monday
        return datetime(2026, 1, day, hour, minute, tzinfo=berlin)
    assert in_working_hours(night_shift, at(5, 22))  # Monday 22:00, the start
    assert in_working_hours(night_shift, at(6, 5, 59))  # Tuesday morning, Monday's shift
    assert not in_working_hours(night_shift, at(6, 6))  # its end
    assert not in_working_hours(night_shift, at(6, 23))  # Tuesday night: no shift
    assert not in_working_hours(night_shift, at(5, 3))  # Monday early: Sunday had no shift
    assert in_working_hours(night_shift, at(10, 2))  # Saturday early: Friday's shift
    assert not in_working_hours(night_shift, at(5, 21, 59))


def test_weighted_round_robin_shares_are_within_two_percent():
    weights = {"a": 5, "b": 3, "c": 2}
    counts = run(OwnerRequest(WEIGHTED_ROUND_ROBIN, ("a", "b", "c"), weights), pool(rep("a"), rep("b"), rep("c")),
                 1000)
    for rep_id, weight in weights.items():
        assert abs(counts[rep_id] / 1000 - weight / 10) <= 0.02


def test_weighted_round_robin_spreads_turns_instead_of_bursts():
    state, sequence = RotationState(), []
    request = OwnerRequest(WEIGHTED_ROUND_ROBIN, ("a", "b"), {"a": 2, "b": 1})
    for _ in range(6):
        choice = select_owner(request, pool(rep("a"), rep("b")), {}, NOW, state)
        sequence.append(choice.rep_id)
        state = choice.new_state
    assert sequence == ["a", "b", "a", "a", "b", "a"]


def test_least_loaded_and_best_tier_first():
    reps = (rep("a", tier=2), rep("b", tier=1), rep("c", tier=1))
    loads = {"a": 1, "b": 9, "c": 4}
    least = select_owner(OwnerRequest(LEAST_LOADED, ("a", "b", "c")), pool(*reps, loads=loads), {}, NOW)
    assert least.rep_id == "a" and "fewest open leads (1)" in least.note
    best = select_owner(OwnerRequest(BEST_TIER_FIRST, ("a", "b", "c")), pool(*reps, loads=loads), {}, NOW)
    assert best.rep_id == "c"  # tier 1, fewer open leads than b


def test_product_line_and_language_filters_only_when_asked():
    reps = (rep("erp", product_lines=("erp",), languages=("de",)), rep("crm", product_lines=("crm",)))
    lead = {"product_line": "CRM", "language": "fr"}
    request = OwnerRequest(ROUND_ROBIN, ("erp", "crm"), match_product_line=True, match_language=True)
    choice = select_owner(request, pool(*reps), lead, NOW)
    assert choice.rep_id == "crm"
    assert choice.skipped == [{"rep_id": "erp", "reason": "product_line_not_covered"}]
    assert select_owner(OwnerRequest(ROUND_ROBIN, ("erp", "crm")), pool(*reps), lead, NOW).rep_id == "erp"


def test_specific_rep_at_capacity_is_not_chosen():
    choice = select_owner(OwnerRequest(SPECIFIC_REP, ("a",)), pool(rep("a", capacity=1), loads={"a": 1}), {}, NOW)
    assert choice.rep_id is None and choice.skipped == [{"rep_id": "a", "reason": "at_capacity"}]
