"""Template rendering in the sandbox; unsubscribe tokens."""
from __future__ import annotations

import pytest

from notification_service.domain.leads import KnownLead
from notification_service.domain.rendering import (
    SAMPLE_VARIABLES,
    TemplateError,
    lead_variables,
    render_email,
    validate_template,
)
from notification_service.domain.signing import read_unsubscribe_token, unsubscribe_token


def parts(**kw: str) -> dict[str, str]:
    return {"subject": "Hi {{ lead.first_name }}", "html_body": "<p>{{ lead.company }}</p>",
            "text_body": "{{ lead.company }}", **kw}


def test_html_is_escaped_and_text_is_not():
    values = {**SAMPLE_VARIABLES, "lead": {**SAMPLE_VARIABLES["lead"], "company": "<Tom & Jerry>"}}
    email = render_email(parts(), values)
    assert email.html == "<p>&lt;Tom &amp; Jerry&gt;</p>" and email.text == "<Tom & Jerry>"


def test_missing_values_render_empty_but_unknown_names_fail():
    values = {**SAMPLE_VARIABLES, "lead": lead_variables(KnownLead(org_id="o", lead_id="l1"))}
    assert render_email(parts(), values).subject == "Hi"
    with pytest.raises(TemplateError) as info:
        render_email(parts(subject="{{ lead.nickname }}"), values)
    assert info.value.part == "subject"


@pytest.mark.parametrize("source", [
    "{{ lead.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lead.custom_fields.update({'x': 1}) }}",  # immutable sandbox: no mutation
    "{{ cycler.__init__.__globals__ }}",
    "{{ 'x' * 100000000 }}", "{{ 9 ** 9 ** 9 }}",  # memory / CPU bombs
    "{% for i in range(99999) %}{{ lead.company }}{{ lead.company }}{% endfor %}",  # output too large
])
def test_the_sandbox_refuses_unsafe_access(source):
    errors = validate_template(parts(text_body=source))
    assert [e.part for e in errors] == ["text_body"]


def test_subject_must_be_one_line():
    assert [e.part for e in validate_template(parts(subject="a\nb"))] == ["subject"]
    assert [e.part for e in validate_template(parts(subject="{{ '' }}"))] == ["subject"]
    assert validate_template(parts()) == []


def test_unsubscribe_tokens_are_signed():
    token = unsubscribe_token("k", "org-1", "lead-1")
    assert read_unsubscribe_token("k", token) == ("org-1", "lead-1")
    assert read_unsubscribe_token("other", token) is None
    payload, _, mac = token.partition(".")
    forged = unsubscribe_token("k", "org-2", "lead-1").split(".")[0] + "." + mac
    assert read_unsubscribe_token("k", forged) is None
    assert read_unsubscribe_token("k", "nodot") is None
    assert read_unsubscribe_token("k", "ßJ¦a.B\x17¹p") is None  # non-ASCII garbage: refused, not a crash
