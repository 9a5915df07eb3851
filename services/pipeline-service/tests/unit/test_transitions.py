"""Stage transitions, the position state machine, nurturing dates (injected clock) and definitions."""
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_service.domain import transitions
from pipeline_service.domain.definitions import DefinitionProblems, parse_pipeline
from pipeline_service.domain.templates import TEMPLATES
from salesflow_shared.clock import ManualClock


@dataclass
class S:
    id: str
    position: int


STAGES = [S("c", 3), S("a", 1), S("b", 2)]


def test_next_and_first_stage_follow_positions_not_list_order():
    assert transitions.first_stage(STAGES).id == "a"
    assert transitions.next_stage(STAGES, "a").id == "b"
    assert transitions.next_stage(STAGES, "b").id == "c"
    assert transitions.next_stage(STAGES, "c") is None  # the last stage closes as won or lost
    assert transitions.next_stage(STAGES, "deleted") is None


@pytest.mark.parametrize("action, status, after", [
    ("enter", "unrouted", "active"), ("move", "active", "active"), ("win", "active", "won"),
    ("lose", "active", "nurturing"), ("reopen", "nurturing", "active"), ("disqualify", "nurturing", "disqualified"),
])
def test_allowed_transitions(action, status, after):
    assert transitions.transition(action, status) == after


@pytest.mark.parametrize("action, status", [
    ("win", "won"), ("lose", "nurturing"), ("move", "won"), ("reopen", "active"), ("enter", "disqualified"),
    ("enter", "erased"), ("win", "unrouted"), ("disqualify", "erased"),
])
def test_refused_transitions(action, status):
    with pytest.raises(transitions.TransitionRefused):
        transitions.transition(action, status)


def test_reorder_must_name_every_stage_once():
    assert transitions.reorder(["a", "b", "c"], ["c", "a", "b"]) == ["c", "a", "b"]
    for bad in (["a", "b"], ["a", "b", "b"], ["a", "b", "x"]):
        with pytest.raises(ValueError):
            transitions.reorder(["a", "b", "c"], bad)


def test_nurture_plan_with_an_injected_clock():
    clock = ManualClock(datetime(2026, 11, 25, 12, tzinfo=UTC))
    assert transitions.plan_nurture(clock.now(), None, 30).reengage_at == datetime(2026, 12, 25, 12, tzinfo=UTC)
    wanted = clock.now() + timedelta(days=3)
    assert transitions.plan_nurture(clock.now(), wanted, 30).reengage_at == wanted
    with pytest.raises(ValueError):
        transitions.plan_nurture(clock.now(), clock.now() - timedelta(seconds=1), 30)
    assert not transitions.is_due(wanted, clock.now())
    clock.advance(timedelta(days=3))
    assert transitions.is_due(wanted, clock.now())


def test_pipeline_definition_problems_are_all_reported_with_paths():
    raw = {"name": "", "stages": [
        {"name": "One", "win_probability": 1.5},
        {"name": "Two", "goal": {"all": [{"field": "colour", "op": "set"}]},
         "task_templates": [{"title": "Call", "type": "fax", "assignee": {"kind": "rep"}}]},
        {"name": "one", "is_ask_stage": True}, {"name": "Four", "is_ask_stage": True}]}
    with pytest.raises(DefinitionProblems) as info:
        parse_pipeline(raw)
    assert not info.value.conflict
    assert {p for p, _ in info.value.problems} == {
        "name", "stages[0].win_probability", "stages[1].goal.all[0].field", "stages[1].task_templates[0].type",
        "stages[1].task_templates[0].assignee.id"}


def test_well_formed_stages_that_clash_are_a_conflict():
    raw = {"name": "P", "stages": [{"name": "One"}, {"name": " one ", "is_ask_stage": True},
                                   {"name": "Two", "is_ask_stage": True}]}
    with pytest.raises(DefinitionProblems) as info:
        parse_pipeline(raw)
    assert info.value.conflict
    assert [p for p, _ in info.value.problems] == ["stages[1].name", "stages[2].is_ask_stage"]


def test_ready_made_templates_are_valid_pipelines():
    outbound = parse_pipeline(TEMPLATES["outbound-cold-calling"])
    assert [s.name for s in outbound.stages] == ["Cold call", "Presentation", "Proposal", "Negotiation", "Decision"]
    inbound = parse_pipeline(TEMPLATES["inbound-web-form"])
    assert [s.name for s in inbound.stages] == ["Qualification meeting", "Negotiation", "Decision"]
    for definition in (outbound, inbound):
        assert sum(s.is_ask_stage for s in definition.stages) == 1
        assert definition.stages[-1].goal is None  # decisions close as won/lost
        assert definition.lost_reasons
