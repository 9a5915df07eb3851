"""Condition parsing (422-worthy problems name the part) and matching on lead facts."""
from __future__ import annotations

import pytest

from assignment_service.domain.conditions import Condition, matches, parse_condition
from assignment_service.domain.directory import PostcodeRange, Territory, resolve_territory
from assignment_service.domain.rules import lead_facts


def parse(raw):
    condition, errors = parse_condition(raw, "c")
    return condition, dict(errors)


def test_unknown_field_and_wrong_operator_are_named():
    _, errors = parse({"field": "contry", "op": "eq", "value": "DE"})
    assert "unknown field 'contry'" in errors["c.field"]
    _, errors = parse({"field": "country", "op": "gt", "value": "DE"})
    assert "operator 'gt' is not allowed for field 'country'" in errors["c.op"]
    _, errors = parse({"field": "value", "op": "approximately", "value": 1})
    assert "unknown operator 'approximately'" in errors["c.op"]


@pytest.mark.parametrize("raw, part", [
    ({"field": "value", "op": "between", "value": [100]}, "c.value"),
    ({"field": "value", "op": "between", "value": [500, 100]}, "c.value"),
    ({"field": "value", "op": "gt", "value": "lots"}, "c.value"),
    ({"field": "source", "op": "in", "value": []}, "c.value"),
    ({"field": "score", "op": "eq", "value": [1, 2]}, "c.value"),
])
def test_bad_values_are_named(raw, part):
    condition, errors = parse(raw)
    assert condition is None and part in errors


def facts(**lead):
    return lead_facts({"lead_id": "l", **lead})


def test_value_bands_are_half_open_so_adjacent_bands_never_overlap():
    low = Condition("value", "between", [None, "10000"])
    mid = Condition("value", "between", ["10000", "50000"])
    high = Condition("value", "between", ["50000", None])
    for value, expected in (("9999.99", "low"), ("10000", "mid"), ("49999", "mid"), ("50000", "high")):
        hits = [n for n, c in (("low", low), ("mid", mid), ("high", high)) if matches(c, facts(value=value))]
        assert hits == [expected]
    assert not matches(high, facts())  # no value: fails every band


def test_text_is_case_insensitive_and_missing_values_fail_except_negations():
    assert matches(Condition("source", "in", ["Webinar", "Trade show"]), facts(source="webinar"))
    assert matches(Condition("country", "eq", "de"), facts(country="DE"))
    assert not matches(Condition("source", "eq", "webinar"), facts())
    assert matches(Condition("source", "ne", "webinar"), facts())
    assert matches(Condition("source", "not_exists"), facts(source=""))
    assert matches(Condition("company.industry", "contains", "soft"), facts(company={"industry": "Software"}))


def test_score_custom_fields_and_utm():
    assert matches(Condition("score", "gte", 80), facts(score=80))
    assert not matches(Condition("score", "gt", 80), facts(score=80))
    assert matches(Condition("custom.seats", "gt", 100), facts(custom_fields={"seats": "250"}))
    assert matches(Condition("custom.partner", "eq", True), facts(custom_fields={"partner": True}))
    assert not matches(Condition("custom.partner", "eq", True), facts(custom_fields={"partner": False}))
    assert matches(Condition("utm.campaign", "starts_with", "spring"), facts(utm={"campaign": "Spring-24"}))


def test_postcode_ranges_and_prefixes():
    assert matches(Condition("postcode", "between", ["80000", "87999"]), facts(postcode="80331"))
    assert not matches(Condition("postcode", "between", ["80000", "87999"]), facts(postcode="90402"))
    assert matches(Condition("postcode", "starts_with", "SW1"), facts(postcode="sw1a 1aa"))


def test_territory_is_the_most_specific_match():
    germany = Territory("t-de", "Germany", countries=("DE",))
    bavaria = Territory("t-by", "Bavaria", countries=("DE",), regions=("Bayern",))
    munich = Territory("t-muc", "Munich", countries=("DE",),
                       postcode_ranges=(PostcodeRange("80000", "81999", "DE"),))
    all_of_them = [germany, bavaria, munich]
    assert resolve_territory(all_of_them, "de", "Bayern", "80331").id == "t-muc"
    assert resolve_territory(all_of_them, "DE", "bayern", "90402").id == "t-by"
    assert resolve_territory(all_of_them, "DE", "Berlin", "10115").id == "t-de"
    assert resolve_territory(all_of_them, "FR", None, None) is None
