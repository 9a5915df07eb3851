"""Incentive programs, pure domain: every score, place and guard below is computed by hand in the comments."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from incentive_service.domain.programs.badges import badges_earned
from incentive_service.domain.programs.definitions import (
    BadgeRule,
    Guards,
    Milestone,
    ProgramDefinition,
    Reward,
    Round,
    RulesFrozen,
    RuleVersion,
    ScoringRule,
    Team,
    revise_rules,
    validate_definition,
)
from incentive_service.domain.programs.scoring import Contribution, Fact, sandbagging_flag, score_lead
from incentive_service.domain.programs.standings import (
    Tally,
    milestone_awards,
    place_awards,
    position,
    rank_changes,
    standings,
    tallies,
    tally,
)
from incentive_service.domain.programs.templates import (
    DEFAULT_RULES,
    milestone_ladder,
    monthly_race,
    team_challenge,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


def day(n: int, hour: int = 10, minute: int = 0) -> datetime:
    """Day n of March 2026 at hour:minute UTC."""
    return datetime(2026, 3, n, hour, minute, tzinfo=UTC)


def program(**overrides) -> ProgramDefinition:
    base = ProgramDefinition(name="March", format="leaderboard", starts_at=START, ends_at=END,
                             versions=(RuleVersion(1, START, DEFAULT_RULES),), participants=("ann", "bob", "cy"))
    return replace(base, **overrides)


def call(key: str, at: datetime, *, rep: str = "ann", lead: str = "L1", seconds: int = 180,
         outcome: str | None = "connected", source: str = "rep") -> Fact:
    return Fact(key=key, kind="activity", lead_id=lead, rep_id=rep, at=at, activity_kind="call",
                duration_seconds=seconds, outcome=outcome, source=source)


def meeting(key: str, at: datetime, *, rep: str = "ann", lead: str = "L1") -> Fact:
    return Fact(key=key, kind="activity", lead_id=lead, rep_id=rep, at=at, activity_kind="meeting")


def stage(key: str, at: datetime, position: int, *, rep: str = "ann", lead: str = "L1", seq: int = 0,
          from_position: int | None = None) -> Fact:
    return Fact(key=key, kind="stage", lead_id=lead, rep_id=rep, at=at, seq=seq, stage_id=f"s{position}",
                stage_position=position, from_stage_position=from_position)


def won(key: str, at: datetime, value: str, *, rep: str = "ann", lead: str = "L1", currency: str = "USD") -> Fact:
    return Fact(key=key, kind="won", lead_id=lead, rep_id=rep, at=at, value=Decimal(value), currency=currency)


def reopened(key: str, at: datetime, *, lead: str = "L1") -> Fact:
    return Fact(key=key, kind="reopened", lead_id=lead, rep_id=None, at=at)


def points(score) -> dict[str, int]:
    return {c.fact_key: c.points for c in score.contributions}


def reasons(score) -> dict[str, str]:
    return {e.fact_key: e.reason for e in score.excluded}


# ---------------------------------------------------------------- activities and their guards


def test_only_validated_activities_count_and_a_duplicate_counts_once():
    facts = [
        call("c1", day(2)),                                  # connected, 180 s: 3
        call("c2", day(2, 11), seconds=60),                  # too short
        call("c3", day(2, 12), outcome="no_answer"),         # not connected
        call("c4", day(2, 13), source="sequence"),           # logged by a sequence
        call("c5", day(2, 10, 0).replace(second=40)),        # the same call as c1 logged again within the minute
        call("c1", day(2)),                                  # c1 redelivered
        meeting("m1", day(3)),                               # 10
        call("c6", day(3), rep="zed"),                       # not a participant
        call("c7", datetime(2026, 2, 28, 23, 0, tzinfo=UTC)),  # before the start
    ]
    score = score_lead(program(), facts)
    assert points(score) == {"c1": 3, "m1": 10}
    why = reasons(score)
    assert why["c2"] == "shorter than 120 s"
    assert why["c3"] == "outcome 'no_answer' is not one of connected"
    assert why["c4"] == "logged by sequence, not by the rep"
    assert why["c5"] == "duplicate of an activity already counted"
    assert why["c6"] == "not by a participant"
    assert why["c7"] == "outside the program's period"


def test_sequence_logged_activities_count_when_the_guard_is_off():
    score = score_lead(program(guards=Guards(rep_logged_only=False)), [call("c4", day(2), source="sequence")])
    assert points(score) == {"c4": 3}


# ---------------------------------------------------------------- stage advances


def test_stage_advance_reverted_within_the_window_does_not_count_and_a_stage_counts_once():
    facts = [
        stage("e1", day(1), 1),   # entry: nothing
        stage("a2", day(2), 2),   # 1 -> 2: 5
        stage("a3", day(3), 3),   # 2 -> 3, back to 2 on day 5 (2 days later, within 7): reverted
        stage("b2", day(5), 2),   # a move back: nothing
        stage("a3b", day(20), 3),  # 2 -> 3 again, not reverted: 5 (stage 3 not yet counted)
        stage("a4", day(21), 4),  # 3 -> 4; back on day 29 is 8 days later, past the window: 5
        stage("b3", day(29), 3),  # back: nothing
        stage("a4b", day(30), 4),  # 3 -> 4 again: stage 4 already counted for this lead
    ]
    score = score_lead(program(), facts)
    assert points(score) == {"a2": 5, "a3b": 5, "a4": 5}
    assert reasons(score) == {"a3": "reverted within 7 days", "a4b": "this stage was already counted for this lead"}


def test_stage_advance_uses_the_from_position_carried_by_the_event():
    # No entry seen (the lead entered before the program): the event's from position says it is an advance.
    score = score_lead(program(), [stage("a3", day(4), 3, from_position=2), stage("x", day(6), 1, from_position=3)])
    assert reasons(score) == {"a3": "reverted within 7 days"}
    score = score_lead(program(), [stage("a3", day(4), 3, from_position=2)])
    assert points(score) == {"a3": 5}


# ---------------------------------------------------------------- won deals


def test_won_deal_points_by_value_and_reopen_takes_them_back():
    # 20 + 1 per full 1,000: 12,500 -> 20 + 12 = 32
    assert points(score_lead(program(), [won("w1", day(10), "12500")])) == {"w1": 32}
    # reopened afterwards: nothing
    score = score_lead(program(), [won("w1", day(10), "12500"), reopened("r1", day(12))])
    assert points(score) == {} and reasons(score) == {"w1": "reopened afterwards"}
    # won again later at 4,000: only the last win, 20 + 4 = 24
    score = score_lead(program(), [won("w1", day(10), "12500"), reopened("r1", day(12)), won("w2", day(14), "4000")])
    assert points(score) == {"w2": 24}


def test_won_deal_in_another_currency_is_converted_or_earns_its_fixed_points():
    # 10,000 EUR at 1.10 = 11,000 USD -> 20 + 11 = 31; without a rate only the fixed 20
    fact = won("w1", day(10), "10000", currency="EUR")
    assert points(score_lead(program(), [fact], {"EUR": Decimal("1.10")})) == {"w1": 31}
    assert points(score_lead(program(), [fact])) == {"w1": 20}


def test_won_after_the_end_earns_nothing():
    score = score_lead(program(), [won("w1", END + timedelta(hours=1), "5000")])
    assert reasons(score) == {"w1": "outside the program's period"}


# ---------------------------------------------------------------- rules frozen once started


def test_rules_changed_after_the_start_make_a_new_version_for_what_happens_next():
    richer = tuple(replace(r, points=5) if r.behaviour == "call" else r for r in DEFAULT_RULES)
    running = revise_rules(program(), richer, started=True, ended=False, now=day(10))
    assert [(v.version, v.effective_from) for v in running.versions] == [(1, START), (2, day(10))]
    score = score_lead(running, [call("early", day(5)), call("late", day(12))])
    assert points(score) == {"early": 3, "late": 5}
    assert [c.rule_version for c in score.contributions] == [1, 2]
    draft = revise_rules(program(), richer, started=False, ended=False, now=day(10))
    assert len(draft.versions) == 1 and draft.versions[0].rules == richer
    with pytest.raises(RulesFrozen):
        revise_rules(program(), richer, started=True, ended=True, now=day(10))


# ---------------------------------------------------------------- validation


def test_a_definition_that_makes_no_sense_is_refused_naming_the_field():
    assert validate_definition(program()) == []
    assert ("ends_at", "must be after starts_at") in validate_definition(program(ends_at=START))
    assert ("target", "a race needs a positive target") in validate_definition(program(format="race"))
    assert validate_definition(program(format="head_to_head")) == [
        ("participants", "a bracket needs 2, 4, 8, ... participants")]
    overlapping = (Team("t1", "One", ("ann", "bob")), Team("t2", "Two", ("bob",)))
    assert ("teams", "a rep can be in one team only") in validate_definition(program(format="team", teams=overlapping))
    twice = (ScoringRule("call", 3), ScoringRule("call", 4))
    assert ("rules", "call has two rules") in validate_definition(program(versions=(RuleVersion(1, START, twice),)))
    bad_cash = (Reward(cash=Decimal(10)),)
    assert ("rewards", "reward 0: cash must be positive and have a currency") in validate_definition(
        program(place_rewards=bad_cash))


# ---------------------------------------------------------------- standings per format


def contrib(key: str, who: str, pts: int, at: datetime, behaviour: str = "call") -> Contribution:
    return Contribution(key, who, behaviour, pts, at, 1)


CONTRIBUTIONS = [
    contrib("1", "ann", 10, day(2)), contrib("2", "ann", 3, day(3)),    # ann 13, reached day 3
    contrib("3", "bob", 13, day(2)),                                    # bob 13, reached day 2
    contrib("4", "cy", 5, day(4)),                                      # cy 5
]


def test_leaderboard_ties_go_to_who_got_there_first_and_the_gap_is_one_point_more():
    prog = program(milestones=(Milestone("m20", "Twenty", 20),))
    board = standings(prog, tallies(prog, CONTRIBUTIONS))
    assert [(e.rank, e.id, e.points) for e in board.entries] == [(1, "bob", 13), (2, "ann", 13), (3, "cy", 5)]
    ann = position(prog, board, "ann")
    assert (ann.rank, ann.of, ann.points_to_pass_next, ann.next_milestone, ann.points_to_next_milestone) == (
        2, 3, 1, "m20", 7)
    cy = position(prog, board, "cy")
    assert cy.points_to_pass_next == 13 - 5 + 1
    assert position(prog, board, "bob").points_to_pass_next is None
    # 1st place 100, 2nd 50: given at the end
    prog = replace(prog, place_rewards=(Reward(cash=Decimal(100), currency="USD"),
                                        Reward(cash=Decimal(50), currency="USD")))
    assert [(a.participant, a.reward.cash) for a in place_awards(prog, board, END)] == [
        ("bob", Decimal(100)), ("ann", Decimal(50))]


def test_race_ranks_finishers_by_when_they_crossed_the_target():
    prog = program(format="race", target=12, place_rewards=(Reward(badge="winner"), Reward(badge="second")))
    more = [*CONTRIBUTIONS, contrib("5", "cy", 20, day(6))]  # cy 25 but crossed 12 on day 6
    board = standings(prog, tallies(prog, more))
    # ann crossed 12 on day 3 (10 then 13), bob on day 2, cy on day 6: bob, ann, cy although cy has most points
    assert [(e.id, e.points, e.finished_at) for e in board.entries] == [
        ("bob", 13, day(2)), ("ann", 13, day(3)), ("cy", 25, day(6))]
    assert [a.key for a in place_awards(prog, board, END)] == ["place:1:bob", "place:2:ann"]
    # nobody finished: no race prize at all even with points
    board = standings(prog, tallies(prog, CONTRIBUTIONS[3:]))
    assert place_awards(prog, board, END) == []


def test_milestones_are_earned_by_everyone_who_reaches_them_when_they_reach_them():
    prog = program(format="milestones", milestones=(Milestone("m5", "Five", 5, Reward(badge="five")),
                                                    Milestone("m12", "Twelve", 12, Reward(cash=Decimal(25),
                                                                                          currency="USD"))))
    t = tallies(prog, CONTRIBUTIONS)
    awards = sorted((a.key, a.at) for a in milestone_awards(prog, t))
    # ann: 10 on day 2 (m5), 13 on day 3 (m12); bob 13 on day 2 (both); cy 5 on day 4 (m5)
    assert awards == [("milestone:m12:ann", day(3)), ("milestone:m12:bob", day(2)), ("milestone:m5:ann", day(2)),
                      ("milestone:m5:bob", day(2)), ("milestone:m5:cy", day(4))]
    assert standings(prog, t).entry("cy").milestones == ("m5",)


def test_team_contest_sum_or_average_per_member_and_each_winning_member_is_rewarded():
    teams = (Team("red", "Red", ("ann", "cy")), Team("blue", "Blue", ("bob",)))
    prog = program(format="team", teams=teams, place_rewards=(Reward(cash=Decimal(100), currency="USD"),))
    t = tallies(prog, CONTRIBUTIONS)
    # sum: red 13 + 5 = 18, blue 13
    assert [(e.id, e.points) for e in standings(prog, t).entries] == [("red", 18), ("blue", 13)]
    assert [a.key for a in place_awards(prog, standings(prog, t), END)] == ["place:1:ann", "place:1:cy"]
    # average: red 18 // 2 = 9, blue 13
    avg = replace(prog, team_scoring="average")
    assert [(e.id, e.points) for e in standings(avg, t).entries] == [("blue", 13), ("red", 9)]


def test_head_to_head_bracket_pairs_first_with_last_and_winners_meet():
    rounds = (Round(START, day(15)), Round(day(15), END))
    prog = program(format="head_to_head", participants=("ann", "bob", "cy", "dee"), rounds=rounds,
                   place_rewards=(Reward(badge="champion"),))
    assert validate_definition(prog) == []
    round1 = [contrib("1", "ann", 3, day(2)), contrib("2", "dee", 8, day(3)),   # ann 3 v dee 8: dee
              contrib("3", "bob", 5, day(4)), contrib("4", "cy", 5, day(5))]    # bob 5 v cy 5: bob got there first
    round2 = [contrib("5", "dee", 4, day(16)), contrib("6", "bob", 6, day(17))]  # final: bob 6 v dee 4
    every = round1 + round2
    per_round = [tallies(prog, every, (r.starts_at, r.ends_at)) for r in rounds]
    mid = standings(prog, {}, per_round, now=day(16))
    assert [(m.round, m.a, m.b, m.a_points, m.b_points, m.winner) for m in mid.matches] == [
        (1, "ann", "dee", 3, 8, "dee"), (1, "bob", "cy", 5, 5, "bob"), (2, "dee", "bob", 4, 6, None)]
    final = standings(prog, {}, per_round, now=END)
    assert final.matches[-1].winner == "bob"
    assert [(e.rank, e.id, e.eliminated_in_round) for e in final.entries] == [
        (1, "bob", None), (2, "dee", 2), (3, "cy", 1), (4, "ann", 1)]  # cy had 5 in round 1, ann 3
    assert [a.key for a in place_awards(prog, final, END)] == ["place:1:bob"]


def test_tally_crossings_are_the_same_in_any_arrival_order():
    cs = [contrib("a", "ann", 4, day(3)), contrib("b", "ann", 4, day(1)), contrib("c", "ann", 4, day(2))]
    assert tally(cs, (8,)) == tally(list(reversed(cs)), (8,)) == Tally(12, day(3), {8: day(2)})


def test_rank_changes_name_who_moved():
    prog = program()
    before = standings(prog, tallies(prog, CONTRIBUTIONS))
    after = standings(prog, tallies(prog, [*CONTRIBUTIONS, contrib("9", "cy", 10, day(7))]))
    # cy 15 goes first; bob and ann each one down
    assert [(c.id, c.old_rank, c.new_rank, c.points) for c in rank_changes(before, after)] == [
        ("cy", 3, 1, 15), ("bob", 1, 2, 13), ("ann", 2, 3, 13)]
    assert len(rank_changes(None, before)) == 3


# ---------------------------------------------------------------- badges and streaks


def test_a_five_day_call_streak_is_earned_once_by_the_call_that_completes_it():
    rule = BadgeRule("streak5", "Five days", "streak", "call", 5)
    days = [1, 2, 3, 5, 6, 7, 8, 9, 10]  # the 4th breaks the first run; 5..9 completes it on the 9th
    cs = [contrib(f"c{d}", "ann", 3, day(d)) for d in days] + [contrib("c9b", "ann", 3, day(9, 8))]
    [earned] = badges_earned([rule], "ann", cs)
    assert (earned.earned_by, earned.at, earned.key) == ("c9b", day(9, 8), "badge:streak5:ann")
    assert badges_earned([rule], "ann", cs[:3]) == []


def test_streak_days_are_the_reps_calendar_days():
    rule = BadgeRule("streak2", "Two days", "streak", "call", 2)
    # 22:30 UTC on the 2nd is 23:30 in Berlin, still the 2nd; 23:30 UTC on the 2nd is the 3rd in Berlin
    late = [contrib("a", "ann", 3, day(2, 22, 30)), contrib("b", "ann", 3, day(2, 23, 30))]
    assert badges_earned([rule], "ann", late, "UTC") == []
    [earned] = badges_earned([rule], "ann", late, "Europe/Berlin")
    assert earned.earned_by == "b"


def test_count_badge_is_earned_by_the_nth_counted_behaviour():
    rule = BadgeRule("three-meetings", "Three meetings", "count", "meeting", 3)
    cs = [contrib(f"m{d}", "ann", 10, day(d), "meeting") for d in (9, 2, 5)] + [contrib("c", "ann", 3, day(1))]
    [earned] = badges_earned([rule], "ann", cs)
    assert earned.earned_by == "m9"


# ---------------------------------------------------------------- sandbagging


def test_a_close_date_pushed_past_the_end_in_the_last_days_is_flagged():
    prog = program()  # ends 1 April; last 7 days from 25 March
    flag = sandbagging_flag(prog, lead_id="L1", rep_id="ann", changed_at=day(28),
                            previous_close=date(2026, 3, 30), new_close=date(2026, 4, 3))
    assert flag is not None and flag.reason == (
        "expected close moved from 2026-03-30 to 2026-04-03, past the program's end, in its last 7 days")
    early = dict(lead_id="L1", rep_id="ann", previous_close=date(2026, 3, 30), new_close=date(2026, 4, 3))
    assert sandbagging_flag(prog, changed_at=day(10), **early) is None  # not in the last days
    assert sandbagging_flag(prog, lead_id="L1", rep_id="ann", changed_at=day(28), previous_close=date(2026, 3, 30),
                            new_close=date(2026, 3, 31)) is None  # still inside the program
    assert sandbagging_flag(replace(prog, guards=Guards(sandbag_last_days=0)), changed_at=day(28), **early) is None


# ---------------------------------------------------------------- templates


def test_templates_make_valid_programs():
    ladder = milestone_ladder("Ladder", START, END, ("ann", "bob"))
    assert validate_definition(ladder) == []
    assert [(m.id, m.points, m.reward.cash) for m in ladder.milestones] == [
        ("bronze", 50, None), ("silver", 100, Decimal(50)), ("gold", 200, Decimal(150))]
    race = monthly_race("December race", 2026, 12, ("ann", "bob"))
    assert validate_definition(race) == []
    assert (race.starts_at, race.ends_at, race.target) == (
        datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), 300)
    challenge = team_challenge("Red v Blue", START, END, (Team("red", "Red", ("ann",)), Team("blue", "Blue", ("bob",))))
    assert validate_definition(challenge) == []
    assert challenge.participants == ("ann", "bob") and challenge.team_scoring == "average"


def test_one_fact_earns_at_most_a_billion_points():
    generous = (ScoringRule("deal_won", points=20, points_per_value_unit=1_000_000, value_unit=Decimal(1)),)
    score = score_lead(program(versions=(RuleVersion(1, START, generous),)), [won("w1", day(10), "1e15")])
    assert points(score) == {"w1": 1_000_000_000}
