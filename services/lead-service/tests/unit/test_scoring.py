"""Scoring rules: evaluation with breakdown, and validation of rule configs."""
import pytest
from lead_testkit import a_stored_lead
from pydantic import ValidationError

from lead_service.domain.enrichment import analyse_email
from lead_service.domain.scoring import RULE_CONFIG, ScoringRule, score_lead


def rule(name, points, **config):
    return ScoringRule(id=name, name=name, points=points, config=RULE_CONFIG.validate_python(config))


RULES = [
    rule("has phone", 5, kind="field_present", field="contact.phone"),
    rule("business email", 10, kind="email_type", email_type="business"),
    rule("free mail", -5, kind="email_type", email_type="free"),
    rule("decision maker", 15, kind="title_keywords", keywords=["CTO", "VP", "Head of"]),
    rule("DACH", 8, kind="country_in", countries=["de", "AT", "CH"]),
    rule("Bavaria", 4, kind="country_in", countries=["DE"], regions=["Bavaria"]),
    rule("big deal", 20, kind="value_band", min="10000", currency="EUR"),
    rule("referral", 7, kind="source_in", sources=["referral"]),
]


def lead(**overrides):
    base = {"contact": {"email": "ada@acme.io", "title": "VP Sales", "phone": None}, "company": {},
            "country": "DE", "region": "Bavaria", "value": "25000.00", "currency": "EUR", "source": "referral"}
    base.update(overrides)
    return a_stored_lead(base)


def test_score_sums_matching_rules_and_explains_each():
    data = lead()
    result = score_lead(data, analyse_email(data.contact.email), RULES)
    assert result.score == 10 + 15 + 8 + 4 + 20 + 7
    reasons = {line.name: line.reason for line in result.breakdown}
    assert reasons["decision maker"] == "title contains 'VP'"
    assert reasons["business email"] == "business email address (acme.io)"
    assert "has phone" not in reasons and "free mail" not in reasons


def test_free_mail_and_bands_and_currency():
    data = lead(contact={"email": "ada@gmail.com", "title": "intern", "phone": "+49"}, value="25000",
                currency="USD", country="FR", source="web_form")
    result = score_lead(data, analyse_email("ada@gmail.com"), RULES)
    assert {line.name for line in result.breakdown} == {"has phone", "free mail"}
    assert result.score == 0


def test_no_rules_no_score():
    assert score_lead(lead(), None, []).score == 0


@pytest.mark.parametrize("config, field", [
    ({"kind": "title_keywords", "keywords": []}, "keywords"),
    ({"kind": "country_in", "countries": ["Germany"]}, "countries"),
    ({"kind": "value_band", "min": "10", "max": "5"}, None),
    ({"kind": "field_present", "field": "contact.shoe_size"}, "field"),
    ({"kind": "source_in", "sources": ["carrier_pigeon"]}, "sources"),
    ({"kind": "email_type", "email_type": "fancy"}, "email_type"),
    ({"kind": "value_band", "min": "1", "extra": True}, "extra"),
])
def test_bad_rule_configs_are_rejected_naming_the_field(config, field):
    with pytest.raises(ValidationError) as info:
        RULE_CONFIG.validate_python(config)
    if field is not None:
        assert any(field in [str(p) for p in e["loc"]] for e in info.value.errors())
