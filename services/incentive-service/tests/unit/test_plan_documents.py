"""Plan documents: what does not make sense is refused naming the field; a valid one round-trips."""
from __future__ import annotations

from datetime import date

import pytest

from incentive_service.domain.plans import PlanProblems, PlanVersion, overlap_problems, parse_plan

VALID = {"name": "AE", "currency": "EUR", "period": "quarter", "effective_from": "2027-01-01",
         "coverage": {"teams": ["t1"]},
         "credit": {"splits": [{"to": "closer", "percent": "80"}, {"to": "sam", "percent": "20"}],
                    "overlays": [{"participant": "mia", "teams": ["t1"], "percent": "10"}]},
         "base_rate": "0.08",
         "tiers": {"mode": "marginal", "bands": [{"from": "0", "to": "100", "rate": "0.08"},
                                                 {"from": "100", "to": None, "rate": "0.12"}]},
         "cap": "50000", "hurdle": "40",
         "spiffs": [{"name": "Cloud", "kind": "product_line", "product_line": "cloud", "amount": "500"}],
         "draw": {"amount": "2000", "recoverable": True}, "clawback": {"days": 90}}


def problems(**changes) -> list[tuple[str, str]]:
    with pytest.raises(PlanProblems) as caught:
        parse_plan({**VALID, **changes})
    return caught.value.problems


def test_a_valid_plan_round_trips_through_its_json():
    plan = parse_plan(VALID)
    assert parse_plan(plan.to_json()) == plan
    assert plan.named_participants() == {"sam", "mia"}


def test_splits_must_sum_to_100():
    found = problems(credit={"splits": [{"to": "closer", "percent": "70"}, {"to": "sam", "percent": "20"}]})
    assert found == [("credit.splits", "percentages must sum to 100, not 90")]


@pytest.mark.parametrize("bands, field", [
    ([{"from": "0", "to": "100", "rate": "0.1"}, {"from": "90", "to": None, "rate": "0.2"}], "tiers.bands[1].from"),
    ([{"from": "0", "to": "100", "rate": "0.1"}, {"from": "110", "to": None, "rate": "0.2"}], "tiers.bands[1].from"),
    ([{"from": "10", "to": None, "rate": "0.1"}], "tiers.bands[0].from"),
    ([{"from": "0", "to": "100", "rate": "0.1"}], "tiers.bands[0].to"),
    ([{"from": "0", "to": None, "rate": "1.5"}], "tiers.bands[0].rate"),
])
def test_overlapping_gapped_or_unbounded_tiers_are_refused(bands, field):
    assert [p for p, _ in problems(tiers={"mode": "retroactive", "bands": bands})] == [field]


@pytest.mark.parametrize("changes, field", [
    ({"currency": "eur"}, "currency"), ({"period": "week"}, "period"), ({"effective_to": "2026-12-31"}, "effective_to"),
    ({"effective_from": "01/01/2027"}, "effective_from"), ({"coverage": {}}, "coverage"),
    ({"spiffs": [{"kind": "large_deal", "amount": "10"}]}, "spiffs[0].min_value"),
    ({"clawback": {"days": 0}}, "clawback.days"), ({"draw": {"amount": "-1"}}, "draw.amount"),
    ({"base_rate": None, "tiers": None}, "base_rate"), ({"bonus": 1}, "bonus"),
])
def test_each_malformed_part_is_named(changes, field):
    assert field in [p for p, _ in problems(**changes)]


def test_plans_covering_the_same_participant_on_overlapping_dates_are_refused():
    existing = PlanVersion("p-old", 1, parse_plan({**VALID, "coverage": {"participants": ["ann"]},
                                                   "effective_to": "2027-07-01"}))
    overlapping = parse_plan({**VALID, "effective_from": "2027-04-01"})
    members = {"ann": (("t1",), None)}
    found = overlap_problems(overlapping, None, [existing], members)
    assert [p for p, _ in found] == ["effective_from"] and "ann" in found[0][1]
    later = parse_plan({**VALID, "effective_from": "2027-07-01"})
    assert overlap_problems(later, None, [existing], members) == []
    assert overlap_problems(overlapping, None, [existing], {"bob": (("t2",), None)}) == []
    assert existing.plan.covers(date(2027, 6, 30)) and not existing.plan.covers(date(2027, 7, 1))


@pytest.mark.parametrize("changes, field", [
    ({"effective_from": "9999-12-31"}, "effective_from"), ({"effective_to": "0001-01-01"}, "effective_to"),
    ({"cap": "1e20"}, "cap"), ({"spiffs": [{"kind": "new_logo", "amount": "1e15"}]}, "spiffs[0].amount"),
])
def test_dates_and_amounts_a_statement_could_not_hold_are_refused(changes, field):
    assert field in [p for p, _ in problems(**changes)]
