"""Property: redelivered and out-of-order events change no score. Whatever the arrival order and however often
each event comes, re-scoring a lead from the facts stored so far ends at the same points as scoring all facts
once in time order."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from incentive_service.domain.programs.definitions import ProgramDefinition, RuleVersion
from incentive_service.domain.programs.scoring import Fact, score_lead
from incentive_service.domain.programs.standings import standings, tallies
from incentive_service.domain.programs.templates import DEFAULT_RULES

START = datetime(2026, 3, 1, tzinfo=UTC)
PROGRAM = ProgramDefinition(name="p", format="leaderboard", starts_at=START, ends_at=START + timedelta(days=31),
                            versions=(RuleVersion(1, START, DEFAULT_RULES),), participants=("ann", "bob"))


@st.composite
def fact(draw, index: int) -> Fact:
    kind = draw(st.sampled_from(["activity", "stage", "won", "reopened"]))
    at = START + timedelta(hours=draw(st.integers(-24, 32 * 24)), minutes=draw(st.integers(0, 59)))
    common = dict(key=f"f{index}", kind=kind, lead_id=draw(st.sampled_from(["L1", "L2"])),
                  rep_id=draw(st.sampled_from(["ann", "bob", None])), at=at, seq=index)
    if kind == "activity":
        return Fact(**common, activity_kind=draw(st.sampled_from(["call", "meeting", "note"])),
                    duration_seconds=draw(st.integers(0, 400)), outcome=draw(st.sampled_from(["connected", None])),
                    source=draw(st.sampled_from(["rep", "sequence"])))
    if kind == "stage":
        pos = draw(st.integers(1, 5))
        return Fact(**common, stage_id=f"s{pos}", stage_position=pos)
    if kind == "won":
        return Fact(**common, value=Decimal(draw(st.integers(0, 50_000))), currency="USD")
    return Fact(**common)


@st.composite
def history_and_arrival(draw):
    facts = [draw(fact(i)) for i in range(draw(st.integers(1, 25)))]
    redelivered = draw(st.lists(st.sampled_from(facts), max_size=10))
    arrival = draw(st.permutations(facts + redelivered))
    return facts, arrival


def board_of(contributions):
    return [(e.id, e.points, e.rank) for e in standings(PROGRAM, tallies(PROGRAM, contributions)).entries]


@settings(max_examples=300, deadline=None)
@given(history_and_arrival())
def test_redeliveries_and_out_of_order_events_change_no_score(case):
    facts, arrival = case
    in_time_order = sorted(facts, key=lambda f: (f.at, f.seq))
    expected = {}
    for lead in {f.lead_id for f in facts}:
        expected[lead] = score_lead(PROGRAM, [f for f in in_time_order if f.lead_id == lead]).contributions

    # As the service does it: store each arriving fact (a redelivery is the same key), re-score its lead.
    stored: dict[str, dict[str, Fact]] = {}
    current: dict[str, tuple] = {}
    for f in arrival:
        stored.setdefault(f.lead_id, {})[f.key] = f
        current[f.lead_id] = score_lead(PROGRAM, stored[f.lead_id].values()).contributions

    assert {lead: set(cs) for lead, cs in current.items()} == {lead: set(cs) for lead, cs in expected.items()}
    everything = [c for cs in expected.values() for c in cs]
    assert board_of([c for cs in current.values() for c in cs]) == board_of(everything)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 30)), min_size=1, max_size=30), st.integers(0, 30))
def test_a_tally_extended_with_later_contributions_equals_one_recomputed(points_at, cut):
    from incentive_service.domain.programs.scoring import Contribution
    from incentive_service.domain.programs.standings import extend_tally, tally
    cs = [Contribution(f"k{i}", "ann", "call", pts, START + timedelta(hours=h), 1) for i, (h, pts) in
          enumerate(points_at)]
    ordered = sorted(cs, key=lambda c: (c.at, c.fact_key))
    first, later = ordered[:cut], ordered[cut:]
    thresholds = (10, 100, 1000)
    assert extend_tally(tally(first, thresholds), later, thresholds) == tally(cs, thresholds)
    if first and later and later[0].at > first[0].at:  # one that comes before the tally's last moment
        assert extend_tally(tally(later, thresholds), first, thresholds) is None
