"""Rule sets: validation that names the problem, first match wins, explanations, re-route fields."""
from __future__ import annotations

import itertools

from assignment_service.domain.rules import References, evaluate, lead_facts, parse_rules, routed_on

REFS = References(reps=frozenset({"u-1", "u-2"}), teams={"team-1": ("u-1", "u-2")},
                  territories=frozenset({"t-de"}))
FALLBACK = {"name": "rest", "fallback": True, "pipeline_id": "p-1", "owner": {"strategy": "round_robin",
                                                                               "team_id": "team-1"}}


def ids():
    counter = itertools.count(1)
    return lambda: f"gen-{next(counter)}"


def parse(rules, refs=REFS):
    parsed, errors = parse_rules(rules, new_id=ids(), refs=refs)
    return parsed, dict(errors)


def test_no_fallback_is_refused():
    _, errors = parse([{"name": "x", "pipeline_id": "p", "owner": {"strategy": "specific_rep", "rep_id": "u-1"}}])
    assert "no fallback rule" in errors["rules"]


def test_fallback_must_be_last_unique_and_unconditional():
    rule = {"pipeline_id": "p", "owner": {"strategy": "specific_rep", "rep_id": "u-1"}}
    _, errors = parse([FALLBACK, rule])
    assert "must be the last rule" in errors["rules[0].fallback"]
    _, errors = parse([{**FALLBACK, "conditions": [{"field": "score", "op": "gt", "value": 1}]}])
    assert "no conditions" in errors["rules[0].conditions"]
    _, errors = parse([FALLBACK, FALLBACK])
    assert "only one fallback" in errors["rules[1].fallback"]


def test_each_problem_is_named_with_its_path():
    rules = [
        {"name": "bad field", "pipeline_id": "p", "conditions": [{"field": "colour", "op": "eq", "value": "red"}],
         "owner": {"strategy": "specific_rep", "rep_id": "u-1"}},
        {"name": "bad op", "pipeline_id": "p", "conditions": [{"field": "source", "op": "gte", "value": 3}],
         "owner": {"strategy": "specific_rep", "rep_id": "u-1"}},
        {"name": "bad owner", "pipeline_id": "p", "owner": {"strategy": "psychic"}},
        {"name": "ghost team", "pipeline_id": "p", "owner": {"strategy": "round_robin", "team_id": "nope"}},
        {"name": "no pipeline", "owner": {"strategy": "specific_rep", "rep_id": "u-1"}},
        {"name": "stage field at creation", "pipeline_id": "p",
         "conditions": [{"field": "stage_name", "op": "eq", "value": "Demo"}],
         "owner": {"strategy": "specific_rep", "rep_id": "u-1"}},
        {"name": "weights outside team", "triggers": ["stage_entry"],
         "conditions": [{"field": "stage_name", "op": "eq", "value": "Demo"}],
         "owner": {"strategy": "weighted_round_robin", "team_id": "team-1", "weights": {"u-1": 2, "u-9": 1}}},
        FALLBACK,
    ]
    _, errors = parse(rules)
    assert "unknown field 'colour'" in errors["rules[0].conditions[0].field"]
    assert "operator 'gte' is not allowed for field 'source'" in errors["rules[1].conditions[0].op"]
    assert "unknown strategy 'psychic'" in errors["rules[2].owner.strategy"]
    assert "no team 'nope'" in errors["rules[3].owner.team_id"]
    assert "pipeline_id is required" in errors["rules[4].pipeline_id"]
    assert "only known at stage_entry" in errors["rules[5].conditions[0].field"]
    assert "no rep 'u-9'" in errors["rules[6].owner.weights.u-9"]


def test_first_match_wins_and_each_evaluated_rule_explains_itself():
    rules, errors = parse([
        {"id": "big", "name": "Big deals", "pipeline_id": "p-ent",
         "conditions": [{"field": "territory", "op": "eq", "value": "t-de"},
                        {"field": "value", "op": "gte", "value": 50000}],
         "owner": {"strategy": "best_tier_first", "team_id": "team-1"}},
        {"id": "web", "name": "Web leads", "pipeline_id": "p-web",
         "conditions": [{"field": "source", "op": "eq", "value": "web"}],
         "owner": {"strategy": "round_robin", "team_id": "team-1"}},
        {"id": "web2", "name": "Also web", "pipeline_id": "p-web2",
         "conditions": [{"field": "source", "op": "eq", "value": "web"}],
         "owner": {"strategy": "round_robin", "team_id": "team-1"}},
        {**FALLBACK, "id": "rest"},
    ])
    assert not errors
    facts = lead_facts({"lead_id": "l", "source": "web", "value": "1200"}, territory_id="t-de")
    match = evaluate(rules, facts, "lead_created")
    assert match.rule.id == "web"
    assert match.evaluations == [
        {"rule_id": "big", "name": "Big deals", "position": 0, "matched": False,
         "failed_condition": {"field": "value", "op": "gte", "value": 50000, "actual": "1200"}},
        {"rule_id": "web", "name": "Web leads", "position": 1, "matched": True},
    ]
    rest = evaluate(rules, lead_facts({"lead_id": "l"}), "lead_created")
    assert rest.rule.id == "rest" and rest.evaluations[-1]["note"].startswith("fallback")


def test_stage_rules_fire_only_on_their_trigger():
    rules, errors = parse([
        {"id": "handoff", "triggers": ["stage_entry"],
         "conditions": [{"field": "stage_name", "op": "eq", "value": "Presentation"}],
         "owner": {"strategy": "round_robin", "team_id": "team-1"}},
        {"id": "am", "triggers": ["lead_won"], "owner": {"strategy": "specific_rep", "rep_id": "u-2"}},
        {**FALLBACK, "id": "rest"},
    ])
    assert not errors
    lead = {"lead_id": "l"}
    assert evaluate(rules, lead_facts(lead), "lead_created").rule.id == "rest"
    at_demo = evaluate(rules, lead_facts(lead, stage={"stage_name": "Demo"}), "stage_entry")
    assert at_demo.rule is None and at_demo.evaluations[0]["failed_condition"]["actual"] == "Demo"
    assert evaluate(rules, lead_facts(lead, stage={"stage_name": "presentation"}), "stage_entry").rule.id == \
        "handoff"
    assert evaluate(rules, lead_facts(lead), "lead_won").rule.id == "am"


def test_stored_rules_round_trip():
    rules, _ = parse([{**FALLBACK, "reroute_on_update": True}])
    again, errors = parse_rules([r.to_dict() for r in rules], new_id=ids())
    assert not errors and again == rules


def test_routed_on_maps_lead_service_field_names():
    assert routed_on({"territory"}, ["postcode", "contact.email"]) == {"postcode"}
    assert routed_on({"custom.seats"}, ["custom_fields.seats"]) == {"custom_fields.seats"}
    assert routed_on({"custom.seats"}, ["custom_fields"]) == {"custom_fields"}
    assert routed_on({"value", "source"}, ["score"]) == set()
