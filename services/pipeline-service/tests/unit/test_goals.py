"""Goal definitions: validation points at the wrong part; evaluation over what pipeline-service knows."""
import pytest

from pipeline_service.domain.goals import LeadFacts, evaluate_goal, facts_needed, validate_goal


def paths(goal):
    return [p.path for p in validate_goal(goal, "stages[1].goal")]


def test_valid_goal_has_no_problems():
    goal = {"all": [{"field": "value", "op": "gt", "value": 1000},
                    {"any": [{"activity": "meeting", "min_count": 2, "since": "stage_entry"},
                             {"tasks": "required_done"}]},
                    {"contact_complete": True}, {"field": "custom.segment", "op": "in", "value": ["smb", "mid"]}]}
    assert validate_goal(goal) == []
    assert validate_goal(None) == []


@pytest.mark.parametrize("goal, expected", [
    ({"all": [{"field": "nope", "op": "set"}]}, ["stages[1].goal.all[0].field"]),
    ({"all": [{"field": "value", "op": "bigger", "value": 1}]}, ["stages[1].goal.all[0].op"]),
    ({"any": [{"field": "value", "op": "gt"}]}, ["stages[1].goal.any[0].value"]),
    ({"all": [{"field": "value", "op": "gt", "value": "lots"}]}, ["stages[1].goal.all[0].value"]),
    ({"all": []}, ["stages[1].goal.all"]),
    ({"all": [{"activity": "party"}]}, ["stages[1].goal.all[0].activity"]),
    ({"all": [{"activity": "call", "min_count": 0}]}, ["stages[1].goal.all[0].min_count"]),
    ({"all": [{"activity": "call", "since": "yesterday"}]}, ["stages[1].goal.all[0].since"]),
    ({"any": [{"all": [{"tasks": "some_done"}]}]}, ["stages[1].goal.any[0].all[0].tasks"]),
    ({"field": "value", "op": "set", "value": 3}, ["stages[1].goal.value"]),
    ({"all": [{"field": "value", "op": "set", "colour": "red"}]}, ["stages[1].goal.all[0].colour"]),
    ({"all": [{"field": "value", "activity": "call"}]}, ["stages[1].goal.all[0]"]),
    ("value > 3", ["stages[1].goal"]),
    ({"field": "custom.", "op": "set"}, ["stages[1].goal.field"]),
])
def test_invalid_goal_points_at_the_wrong_part(goal, expected):
    assert paths(goal) == expected


def facts(**kw):
    return LeadFacts(**kw)


def test_field_conditions():
    lead = {"value": "15000.00", "contact": {"email": "a@b.c"}, "custom_fields": {"segment": "SMB"},
            "expected_close_date": "2026-12-01", "utm": {"source": "google"}}
    f = facts(fields=lead)
    assert evaluate_goal({"field": "value", "op": "gt", "value": 10000}, f)
    assert not evaluate_goal({"field": "value", "op": "gt", "value": 20000}, f)
    assert evaluate_goal({"field": "value", "op": "lte", "value": "15000"}, f)
    assert evaluate_goal({"field": "contact.email", "op": "set"}, f)
    assert evaluate_goal({"field": "contact.phone", "op": "not_set"}, f)
    assert evaluate_goal({"field": "custom.segment", "op": "eq", "value": "smb"}, f)  # case-insensitive
    assert evaluate_goal({"field": "custom.segment", "op": "in", "value": ["smb", "mid"]}, f)
    assert evaluate_goal({"field": "utm.source", "op": "contains", "value": "goo"}, f)
    assert evaluate_goal({"field": "expected_close_date", "op": "lt", "value": "2027-01-01"}, f)
    # an unknown value satisfies no comparison, not even "ne"
    assert not evaluate_goal({"field": "score", "op": "ne", "value": 5}, f)
    assert not evaluate_goal({"field": "score", "op": "gt", "value": 5}, facts())


def test_contact_complete():
    full = {"contact": {"first_name": "A", "last_name": "B", "email": "a@b.c", "phone": "+1"}}
    assert evaluate_goal({"contact_complete": True}, facts(fields=full))
    assert not evaluate_goal({"contact_complete": True}, facts(fields={"contact": {"email": "a@b.c"}}))


def test_activity_counts_ever_and_in_stage():
    f = facts(activities_ever={"meeting": 2}, activities_in_stage={"meeting": 1})
    assert evaluate_goal({"activity": "meeting", "min_count": 2}, f)
    assert not evaluate_goal({"activity": "meeting", "min_count": 2, "since": "stage_entry"}, f)
    assert evaluate_goal({"activity": "meeting", "since": "stage_entry"}, f)
    assert not evaluate_goal({"activity": "demo"}, f)


def test_required_tasks_done():
    assert not evaluate_goal({"tasks": "required_done"}, facts(required_tasks_total=2, required_tasks_done=1))
    assert evaluate_goal({"tasks": "required_done"}, facts(required_tasks_total=2, required_tasks_done=2))
    assert evaluate_goal({"tasks": "required_done"}, facts())  # no required task: nothing to wait for


def test_all_and_any_combine():
    goal = {"all": [{"activity": "meeting"}, {"any": [{"field": "value", "op": "set"}, {"tasks": "required_done"}]}]}
    assert not evaluate_goal(goal, facts(activities_ever={"meeting": 1}, required_tasks_total=1))
    assert evaluate_goal(goal, facts(activities_ever={"meeting": 1}, required_tasks_total=1, fields={"value": "1"}))
    assert evaluate_goal(goal, facts(activities_ever={"meeting": 1}, required_tasks_total=1, required_tasks_done=1))


def test_no_goal_never_advances():
    assert not evaluate_goal(None, facts(activities_ever={"meeting": 9}))


def test_json_oddities_are_handled():
    # JSON writes 2 as 2.0 sometimes; NaN and Infinity (which Python's parser accepts) are refused.
    assert validate_goal({"activity": "call", "min_count": 2.0}) == []
    assert paths({"activity": "call", "min_count": 2.5}) == ["stages[1].goal.min_count"]
    assert paths({"field": "value", "op": "gt", "value": float("nan")}) == ["stages[1].goal.value"]
    assert paths({"field": "value", "op": "in", "value": [1, float("inf")]}) == ["stages[1].goal.value"]
    assert evaluate_goal({"activity": "call", "min_count": 2.0}, LeadFacts(activities_ever={"call": 2}))


@pytest.mark.parametrize("goal, needed", [
    (None, set()),
    ({"field": "value", "op": "gt", "value": 0}, set()),
    ({"contact_complete": True}, set()),
    ({"activity": "meeting", "min_count": 1}, {"activities"}),
    ({"tasks": "required_done"}, {"tasks"}),
    ({"all": [{"activity": "proposal", "min_count": 1, "since": "stage_entry"}, {"field": "value", "op": "gt",
                                                                                   "value": 0}]}, {"activities"}),
    ({"any": [{"all": [{"tasks": "required_done"}]}, {"activity": "call"}]}, {"activities", "tasks"}),
])
def test_a_goal_is_judged_on_the_facts_it_names_only(goal, needed):
    # What pipeline-service reads before judging a goal: the activities and the required tasks only when named.
    assert facts_needed(goal) == needed
