"""Mailchimp lists follow the lead's whole life: for any journey, in any order its events arrive, the lead ends
on exactly the lists (with exactly the tags) its final state calls for; and the list operations decided along
the way, applied to a Mailchimp that remembers what it was told, leave it there too."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from notification_service.domain.mailchimp_lists import (
    LeadLife,
    ListRule,
    Membership,
    changes,
    desired_lists,
    holds,
    nurture_rule,
)

P = "pipe"
RULES = (
    ListRule("inbound", "stage_entry", "inbound", stage_id="s1", pipeline_id=P, tags=("web-form",)),
    ListRule("past-demo", "stage_exit", "demo-done", stage_id="s2", tags=("demoed",)),
    ListRule("leave-inbound", "stage_entry", "inbound", action="unsubscribe", stage_id="s3"),
    ListRule("onboarding", "won", "onboarding", tags=("customer",)),
    ListRule("comeback", "reopened", "inbound", tags=("reopened",)),
    ListRule("not-a-fit", "disqualified", "not-a-fit"),
    nurture_rule("nurture", "nurture"),
)


# ------------------------------------------------------------------ the fold of events into a LeadLife
# An event: (producer stream, version, kind, payload). Pipeline facts are ordered by the pipeline version, the
# lead's status by lead-service's version (each stream's newest wins); the stages entered are a set.
def apply(life: LeadLife, versions: dict[str, int], event: tuple) -> LeadLife:
    stream, version, kind, value = event
    if kind == "entered":  # StageAdvanced: remembered whatever its age
        life = replace(life, entered=life.entered | {(P, value)})
    if version <= versions.get(stream, 0):
        return life
    versions[stream] = version
    if kind == "entered":
        return replace(life, pipeline_id=P, stage_id=value, outcome=None)
    if kind == "reopened":
        return replace(life, outcome=None, reopened=True)
    if kind in ("won", "lost"):  # LeadWon / LeadLost carry the pipeline and the stage the lead was in
        return replace(life, outcome=kind, pipeline_id=P, stage_id=value)
    if kind == "status":
        return replace(life, disqualified=value == "disqualified")
    raise AssertionError(kind)


def fold(events: list[tuple]) -> LeadLife:
    life, versions = LeadLife(), {}
    for event in events:
        life = apply(life, versions, event)
        if event[2] == "reopened":  # the flag is monotonic, also when the reopening arrives late
            life = replace(life, reopened=True)
    return life


@st.composite
def journeys(draw) -> list[tuple]:
    """A lead's life in the order it happened: stage moves, outcomes, reopenings, perhaps a disqualification."""
    events: list[tuple] = [("pipeline", 1, "entered", "s1")]
    version, stage, outcome = 1, "s1", None
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["entered", "entered", "won", "lost", "reopened"]))
        if (kind == "reopened") != (outcome == "lost") or (kind == "entered" and outcome is not None):
            continue  # only a lost lead is reopened; a closed lead moves no more
        version += 1
        if kind == "entered":
            stage = draw(st.sampled_from(["s1", "s2", "s3"]))
            events.append(("pipeline", version, kind, stage))
        elif kind == "reopened":
            events.append(("pipeline", version, kind, None))
            version, stage, outcome = version + 1, "s1", None
            events.append(("pipeline", version, "entered", stage))
        else:
            outcome = kind
            events.append(("pipeline", version, kind, stage))
    if draw(st.booleans()):
        events.append(("lead", 2, "status", "disqualified"))
    return events


def reconcile(mailchimp: dict[str, frozenset[str]], life: LeadLife) -> None:
    """Carry out the decided changes on a Mailchimp that remembers memberships and tags."""
    for change in changes(dict(mailchimp), desired_lists(RULES, life)):
        if change.remove:
            del mailchimp[change.list_id]
        elif change.subscribe:
            mailchimp[change.list_id] = change.add
        else:
            mailchimp[change.list_id] = (mailchimp[change.list_id] | change.add) - change.drop


@settings(max_examples=400, deadline=None)
@given(journey=journeys(), data=st.data())
def test_any_arrival_order_ends_on_the_lists_the_final_state_calls_for(journey, data):
    arrival = data.draw(st.permutations(journey))
    in_order, shuffled = fold(journey), fold(list(arrival))
    assert shuffled == in_order
    mailchimp: dict[str, frozenset[str]] = {}
    life, versions = LeadLife(), {}
    for event in arrival:  # each event is handled as it arrives, deciding the list operations it needs
        life = apply(life, versions, event)
        if event[2] == "reopened":
            life = replace(life, reopened=True)
        reconcile(mailchimp, life)
    assert mailchimp == {k: m.tags for k, m in desired_lists(RULES, in_order).items()}


def test_the_lists_of_each_moment_of_a_life():
    life = LeadLife(entered=frozenset({(P, "s1")}), pipeline_id=P, stage_id="s1")
    assert desired_lists(RULES, life) == {"inbound": Membership(frozenset({"web-form"}), "inbound")}
    demo = replace(life, entered=life.entered | {(P, "s2")}, stage_id="s2")
    assert set(desired_lists(RULES, demo)) == {"inbound"}  # still in the demo stage: not past it
    lost = replace(demo, outcome="lost")
    assert {k: set(m.tags) for k, m in desired_lists(RULES, lost).items()} == {
        "inbound": {"web-form"}, "demo-done": {"demoed"}, "nurture": {"nurture"}}
    reopened = replace(lost, outcome=None, reopened=True, stage_id="s1")
    assert {k: set(m.tags) for k, m in desired_lists(RULES, reopened).items()} == {
        "inbound": {"web-form", "reopened"}, "demo-done": {"demoed"}}  # off the nurture list
    won = replace(reopened, outcome="won")
    assert set(desired_lists(RULES, won)) == {"inbound", "demo-done", "onboarding"}
    moved_on = replace(reopened, entered=reopened.entered | {(P, "s3")}, stage_id="s3")
    assert "inbound" not in desired_lists(RULES, moved_on)  # the unsubscribe rule holds
    assert desired_lists(RULES, replace(won, disqualified=True)) == {
        "not-a-fit": Membership(frozenset(), "not-a-fit")}
    assert desired_lists(RULES, replace(won, reachable=False)) == {}
    assert not holds(ListRule("other", "stage_entry", "x", stage_id="s1", pipeline_id="another"), life)


def test_changes_name_each_list_once():
    current = {"a": frozenset({"t1"}), "b": frozenset({"t1", "t2"})}
    desired = {"b": Membership(frozenset({"t2", "t3"}), "r"), "c": Membership(frozenset({"x"}), "s")}
    assert [(c.list_id, c.subscribe, c.remove, set(c.add), set(c.drop)) for c in changes(current, desired)] == [
        ("a", False, True, set(), set()), ("b", False, False, {"t3"}, {"t1"}), ("c", True, False, {"x"}, set())]
