"""Sequence triggers and stopping rules, milestone once-keys: pure domain code."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from notification_service.domain.milestones import DealFact, MilestoneRule, fired, quarter_of
from notification_service.domain.sequences import (
    LeadState,
    SequenceSpec,
    matches_lead_created,
    matches_outcome,
    matches_stage_entry,
    still_eligible,
    stop_reason,
)


def spec(trigger: str, **kw) -> SequenceSpec:
    return SequenceSpec(trigger=trigger, steps=(), **kw)  # type: ignore[arg-type]


def test_triggers_match_their_events():
    assert matches_stage_entry(spec("stage_entry", stage_id="s1"), "p1", "s1")
    assert matches_stage_entry(spec("stage_entry", stage_id="s1", pipeline_id="p1"), "p1", "s1")
    assert not matches_stage_entry(spec("stage_entry", stage_id="s1", pipeline_id="p2"), "p1", "s1")
    assert not matches_stage_entry(spec("stage_entry", stage_id="s2"), "p1", "s1")
    assert matches_lead_created(spec("lead_created", source="web_form"), None, "form-1")
    assert matches_lead_created(spec("lead_created", source="web_form"), "web_form", None)
    assert not matches_lead_created(spec("lead_created", source="web_form"), "import", None)
    assert matches_lead_created(spec("lead_created"), "import", None)
    assert matches_outcome(spec("lead_lost"), "lead_lost", "p1")
    assert not matches_outcome(spec("lead_won"), "lead_lost", "p1")


@pytest.mark.parametrize("trigger,enrolled,fact,stage,expected", [
    ("stage_entry", "s1", "stage_entered", "s2", "left_stage"),
    ("stage_entry", "s1", "stage_entered", "s1", None),
    ("lead_created", None, "stage_entered", "s2", None),
    ("lead_created", None, "disqualified", None, "disqualified"),
    ("lead_lost", None, "erased", None, "erased"),
    ("lead_won", None, "unsubscribed", None, "unsubscribed"),
    ("stage_entry", "s1", "won", None, "won"),
    ("lead_won", None, "won", None, None),  # the onboarding sequence is FOR won leads
    ("stage_entry", "s1", "lost", None, "lost"),
    ("lead_lost", None, "lost", None, None),  # the nurture drip is FOR lost leads
    ("lead_lost", None, "reopened", None, "reopened"),
    ("lead_won", None, "reopened", None, None),
])
def test_stop_rules(trigger, enrolled, fact, stage, expected):
    assert stop_reason(trigger, enrolled, fact, stage) == expected


def test_eligibility_is_checked_again_before_each_step():
    open_in_s1 = LeadState(status="open", stage_id="s1", unsubscribed=False, erased=False)
    assert still_eligible("stage_entry", "s1", open_in_s1) is None
    assert still_eligible("stage_entry", "s2", open_in_s1) == "left_stage"
    assert still_eligible("stage_entry", "s1", LeadState("open", "s1", True, False)) == "unsubscribed"
    assert still_eligible("lead_lost", None, LeadState("lost", "s1", False, False)) is None
    assert still_eligible("lead_lost", None, LeadState("open", "s1", False, False)) == "reopened"
    assert still_eligible("lead_won", None, LeadState("won", "s1", False, False)) is None
    assert still_eligible("lead_created", None, LeadState("disqualified", None, False, False)) == "disqualified"


RULES = [
    MilestoneRule(id="big", name="Big win", kind="deal_won", min_value=Decimal("10000"), currency="EUR"),
    MilestoneRule(id="first", name="First of quarter", kind="first_deal_of_quarter"),
    MilestoneRule(id="meet", name="Past meeting", kind="stage_exit_above_value", stage_id="meeting",
                  min_value=Decimal("5000")),
]


def fact(kind: str, value: str | None, *, lead: str = "l1", at: datetime | None = None, frm: str | None = None,
         currency: str = "EUR") -> DealFact:
    return DealFact(kind=kind, lead_id=lead, rep_id="r1", value=Decimal(value) if value else None,  # type: ignore
                    currency=currency, at=at or datetime(2026, 5, 2, tzinfo=UTC), from_stage_id=frm)


def test_milestones_fire_with_keys_that_make_them_once():
    keys = dict((r.id, k) for r, k in fired(RULES, fact("won", "12000")))
    assert keys == {"big": "milestone:big:lead:l1", "first": "milestone:first:rep:r1:2026Q2"}
    # a second win in the quarter has the same first-of-quarter key: the delivery's unique key refuses it
    again = dict((r.id, k) for r, k in fired(RULES, fact("won", "12000", lead="l2")))
    assert again["first"] == keys["first"] and again["big"] != keys["big"]
    assert [r.id for r, _ in fired(RULES, fact("won", "9000"))] == ["first"]
    assert [r.id for r, _ in fired(RULES, fact("won", "12000", currency="USD"))] == ["first"]
    assert [r.id for r, _ in fired(RULES, fact("left_stage", "6000", frm="meeting"))] == ["meet"]
    assert fired(RULES, fact("left_stage", "6000", frm="proposal")) == []
    assert fired(RULES, fact("left_stage", None, frm="meeting")) == []


def test_quarters():
    assert quarter_of(datetime(2026, 1, 1, tzinfo=UTC)) == "2026Q1"
    assert quarter_of(datetime(2026, 9, 30, tzinfo=UTC)) == "2026Q3"
    assert quarter_of(datetime(2026, 12, 31, tzinfo=UTC)) == "2026Q4"
