"""Email templates: Jinja2 in a sandbox, a subject plus HTML and text parts, rendered from the lead, its
owner and the stage. A template is checked when saved (compile + render with sample variables) and a render
that still fails at send time is reported as a `TemplateError`, never a crash."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .leads import KnownLead

PARTS = ("subject", "html_body", "text_body")


class TemplateError(ValueError):
    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def _finalize(value: Any) -> Any:
    return "" if value is None else value


MAX_OUTPUT_CHARS = 500_000  # per part: a template cannot make a huge email (or exhaust memory)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox (no attribute tricks, no mutation), plus: no `**`, no huge `'x' * n`."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the power operator is not allowed")
        sized = left if isinstance(left, (str, list, tuple)) else right if isinstance(right, (str, list, tuple)) \
            else None
        times = right if sized is left else left
        if sized is not None and isinstance(times, int) and len(sized) * times > MAX_OUTPUT_CHARS:
            raise SecurityError("this repetition makes a value too large")
        return super().call_binop(context, operator, left, right)


_HTML_ENV = _Sandbox(autoescape=True, undefined=StrictUndefined, finalize=_finalize)
_TEXT_ENV = _Sandbox(autoescape=False, undefined=StrictUndefined, finalize=_finalize)


def _bounded(chunks: Any) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise SecurityError(f"the rendered text is longer than {MAX_OUTPUT_CHARS} characters")
        out.append(chunk)
    return "".join(out)


@lru_cache(maxsize=1024)
def _compiled(html: bool, source: str) -> Any:
    """Compiling is the costly part of rendering; a template's source compiles once per process."""
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


def render_part(part: str, source: str, variables: dict[str, Any]) -> str:
    try:
        return _bounded(_compiled(part == "html_body", source).generate(variables))
    except TemplateSyntaxError as exc:
        raise TemplateError(part, f"syntax error line {exc.lineno}: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(part, f"not allowed in a template: {exc}") from exc
    except JinjaTemplateError as exc:
        raise TemplateError(part, str(exc.message or exc)) from exc
    except Exception as exc:  # a filter raising on odd data (e.g. int('x')): still a template failure
        raise TemplateError(part, f"{type(exc).__name__}: {exc}") from exc


def render_email(parts: dict[str, str], variables: dict[str, Any]) -> RenderedEmail:
    subject = render_part("subject", parts["subject"], variables).strip()
    if "\n" in subject or "\r" in subject:
        raise TemplateError("subject", "the subject must be a single line")
    return RenderedEmail(subject=subject, html=render_part("html_body", parts["html_body"], variables),
                         text=render_part("text_body", parts["text_body"], variables))


def validate_template(parts: dict[str, str]) -> list[TemplateError]:
    """Every part that does not compile or render with the sample variables (empty list: valid)."""
    errors: list[TemplateError] = []
    for part in PARTS:
        try:
            rendered = render_part(part, parts[part], SAMPLE_VARIABLES)
            if part == "subject" and ("\n" in rendered.strip() or not rendered.strip()):
                raise TemplateError(part, "the subject must be one non-empty line")
        except TemplateError as exc:
            errors.append(exc)
    return errors


SAMPLE_VARIABLES: dict[str, Any] = {
    "lead": {
        "id": "lead-sample", "first_name": "Ada", "last_name": "Lovelace", "full_name": "Ada Lovelace",
        "email": "ada@example.com", "company": "Analytical Engines Ltd", "title": "CTO", "phone": "+44 20 0000",
        "country": "GB", "timezone": "Europe/London", "language": "en", "product_line": "platform",
        "value": "12000.00", "currency": "EUR", "source": "web_form", "custom_fields": {},
    },
    "owner": {"id": "rep-sample", "name": "Grace Hopper", "email": "grace@example.com",
              "timezone": "America/New_York"},
    "stage": {"id": "stage-sample", "name": "Qualified", "pipeline_id": "pipeline-sample"},
    "task": {"id": "task-sample", "title": "Call back", "due_at": "2026-01-05T10:00:00+00:00"},
    "milestone": {"id": "rule-sample", "name": "Big deal won", "kind": "deal_won",
                  # set for quota_reached rules only (None otherwise)
                  "quota": {"period": "quarter", "period_start": "2026-01-01", "target": "50000.00",
                            "attained": "51200.00", "attainment_pct": 102.4, "currency": "EUR"}},
    # set for the customer hand-over (rep.customer_handover) only
    "deal": {"value": "12000.00", "currency": "EUR", "notes": "Wants onboarding in March.",
             "closer": {"id": "rep-closer", "name": "Alan Turing", "email": "alan@example.com"}},
    "program": {"id": "program-sample", "name": "March race", "achievement": "Silver", "points": 120, "place": 1,
                "badge": "silver", "cash": "50.00", "currency": "EUR", "next": "Gold at 200 points (80 to go)",
                "rules": "call (connected, >= 2 min) 3 pts; meeting 10 pts", "ends_at": "2026-04-01T00:00:00+00:00",
                "effective_from": "2026-03-10T00:00:00+00:00"},
    "unsubscribe_url": "https://example.com/unsubscribe/sample",
    "org_id": "org-sample",
}


def lead_variables(lead: KnownLead | None) -> dict[str, Any]:
    """The `lead` variable from what is known of the lead (every key exists, unknown values are None)."""
    if lead is None:
        return {**_NO_LEAD, "custom_fields": {}}
    first, last = lead.first_name, lead.last_name
    return {
        "id": lead.lead_id, "first_name": first, "last_name": last,
        "full_name": " ".join(p for p in (first, last) if p) or None,
        "email": lead.email, "company": lead.company, "title": lead.title,
        "phone": lead.phone, "country": lead.country, "timezone": lead.timezone,
        "language": lead.language, "product_line": lead.product_line,
        "value": None if lead.value is None else str(lead.value),
        "currency": lead.currency, "source": lead.source,
        "custom_fields": lead.custom_fields or {},
    }


_NO_LEAD: dict[str, Any] = {key: None for key in ("id", "first_name", "last_name", "full_name", "email", "company",
                                                  "title", "phone", "country", "timezone", "language",
                                                  "product_line", "value", "currency", "source")}


def owner_variables(rep: dict[str, Any] | None) -> dict[str, Any]:
    rep = rep or {}
    return {"id": rep.get("rep_id"), "name": rep.get("name"), "email": rep.get("email"),
            "timezone": rep.get("timezone")}
