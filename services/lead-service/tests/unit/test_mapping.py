"""Mapping a submitted payload to a lead: field names, defaults, required fields, custom fields."""
from decimal import Decimal

from lead_service.domain.custom_fields import CustomFieldDef
from lead_service.domain.mapping import FormSpec, map_payload, validate_spec

SPEC = FormSpec(mapping={"mail": "contact.email", "who": "contact.full_name", "org": "company.name",
                         "budget": "value", "cur": "currency", "campaign": "utm.campaign", "seats": "custom.seats"},
                defaults={"source": "web_form", "product_line": "pro"}, required=("contact.email",),
                ignored=("website", "sf_key"))


def test_maps_incoming_names_to_lead_fields_and_applies_defaults():
    result = map_payload({"mail": " Ada@Example.COM ", "who": "Ada King Lovelace", "org": "Analytical",
                          "budget": "1500.5", "cur": "eur", "campaign": "spring", "website": "", "sf_key": "pk",
                          "button": "Send"}, SPEC)
    assert result.ok, result.errors
    lead = result.lead
    assert lead.contact.email == "ada@example.com"
    assert (lead.contact.first_name, lead.contact.last_name) == ("Ada", "King Lovelace")
    assert lead.company.name == "Analytical" and lead.value == Decimal("1500.5") and lead.currency == "EUR"
    assert lead.utm == {"campaign": "spring"} and lead.source == "web_form" and lead.product_line == "pro"
    assert result.unmapped == ["button"]


def test_a_field_named_like_a_lead_field_maps_to_itself():
    result = map_payload({"contact.email": "a@b.io", "country": "de"}, FormSpec())
    assert result.ok and result.lead.country == "DE"


def test_missing_required_field_names_the_lead_field_and_its_incoming_name():
    result = map_payload({"email": "a@b.io"}, SPEC)
    assert not result.ok
    assert [(e.field, e.message) for e in result.errors] == [("contact.email", "required (mapped from 'mail')")]


def test_invalid_values_are_reported_per_field():
    result = map_payload({"mail": "not-an-email", "budget": "lots", "cur": "EUR"}, SPEC)
    assert {e.field for e in result.errors} == {"contact.email", "value"}


def test_value_without_currency_is_rejected():
    result = map_payload({"mail": "a@b.io", "budget": "10"}, SPEC)
    assert not result.ok and "currency is required" in result.errors[0].message


def test_nested_objects_are_refused_and_lists_joined():
    result = map_payload({"mail": "a@b.io", "org": {"x": 1}}, SPEC)
    assert [e.field for e in result.errors] == ["org"]
    result = map_payload({"mail": "a@b.io", "org": ["A", "B"]}, SPEC)
    assert result.lead.company.name == "A, B"


def test_custom_fields_are_typed_by_the_org_definitions():
    defs = {"seats": CustomFieldDef("seats", "number")}
    assert map_payload({"mail": "a@b.io", "seats": "25"}, SPEC, defs).lead.custom_fields == {"seats": 25}
    bad = map_payload({"mail": "a@b.io", "seats": "many"}, SPEC, defs)
    assert [(e.field, e.message) for e in bad.errors] == [("custom.seats", "must be a number")]
    unknown = map_payload({"mail": "a@b.io", "seats": "3"}, SPEC, {})
    assert unknown.errors[0].field == "custom.seats"
    required = map_payload({"mail": "a@b.io"}, SPEC, {"tier": CustomFieldDef("tier", "choice", ("a", "b"), True)})
    assert [(e.field, e.message) for e in required.errors] == [("custom.tier", "required")]


def test_form_definitions_are_validated():
    problems = validate_spec({"email": "contact.mail"}, {"source": "pigeon", "nope": 1}, ["contact.emial"])
    fields = [p.field for p in problems]
    assert fields == ["mapping.email", "defaults.nope", "required"]
    problems = validate_spec({"email": "contact.email"}, {"source": "pigeon"}, [])
    assert [p.field for p in problems] == ["defaults.source"]
    spec = {"email": "contact.email", "x": "custom.size_band"}
    assert validate_spec(spec, {"country": "DE"}, ["contact.email"]) == []
