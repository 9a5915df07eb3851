"""Turning a template plus what we know of a lead, its owner and the stage into a stored, ready-to-send email."""
from __future__ import annotations

from email.utils import formataddr
from typing import Any

from ..config import Settings
from ..domain.leads import KnownLead
from ..domain.rendering import TemplateError, lead_variables, owner_variables, render_email
from ..domain.signing import unsubscribe_token

# In the milestone email when the milestone is a reached quota.
QUOTA_LINE = ("You reached {{ milestone.quota.attainment_pct }}% of your {{ milestone.quota.period }} quota: "
              "{{ milestone.quota.attained }} of {{ milestone.quota.target }} {{ milestone.quota.currency }}.")
# In program emails when the achievement pays cash.
PROGRAM_REWARD_LINE = ("{% if program.cash %} {{ program.cash }} {{ program.currency }} will be on your next "
                       "commission statement.{% endif %}")
# Rep emails used when an org has no template with the key `rep.<reason>`.
DEFAULT_REP_TEMPLATES: dict[str, dict[str, str]] = {
    "lead_assigned": {
        "subject": "New lead assigned to you: {{ lead.full_name or lead.company or lead.email }}",
        "text_body": "Hi {{ owner.name }},\n\n{{ lead.full_name or 'A new lead' }}{% if lead.company %} "
                     "({{ lead.company }}){% endif %} is now yours.\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p><b>{{ lead.full_name or 'A new lead' }}</b>"
                     "{% if lead.company %} ({{ lead.company }}){% endif %} is now yours.</p>",
    },
    "task_assigned": {
        "subject": "Task assigned to you: {{ task.title }}",
        "text_body": "Hi {{ owner.name }},\n\n\"{{ task.title }}\"{% if lead.full_name %} ({{ lead.full_name }})"
                     "{% endif %} is now yours{% if task.due_at %}, due at {{ task.due_at }}{% endif %}.\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p>&ldquo;{{ task.title }}&rdquo;{% if lead.full_name %} "
                     "({{ lead.full_name }}){% endif %} is now yours{% if task.due_at %}, due at {{ task.due_at }}"
                     "{% endif %}.</p>",
    },
    "task_due": {
        "subject": "Task due soon: {{ task.title }}",
        "text_body": "Hi {{ owner.name }},\n\n\"{{ task.title }}\" is due at {{ task.due_at }}.\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p>&ldquo;{{ task.title }}&rdquo; is due at {{ task.due_at }}.</p>",
    },
    "task_overdue": {
        "subject": "Task overdue: {{ task.title }}",
        "text_body": "Hi {{ owner.name }},\n\n\"{{ task.title }}\" was due at {{ task.due_at }}.\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p>&ldquo;{{ task.title }}&rdquo; was due at {{ task.due_at }}.</p>",
    },
    "customer_handover": {
        "subject": "Customer hand-over: {{ lead.company or lead.full_name or lead.email }}",
        "text_body": "Hi {{ owner.name }},\n\n{{ deal.closer.name or 'Sales' }} won "
                     "{{ lead.company or lead.full_name }}"
                     "{% if deal.value %} ({{ deal.value }} {{ deal.currency }}){% endif %}; the customer is yours "
                     "now.\n\nCustomer: {{ lead.full_name or '-' }}{% if lead.title %}, {{ lead.title }}{% endif %}"
                     "{% if lead.company %}, {{ lead.company }}{% endif %}\nEmail: {{ lead.email or '-' }}\n"
                     "Phone: {{ lead.phone or '-' }}\nClosed by: {{ deal.closer.name or deal.closer.id or '-' }}"
                     "{% if deal.closer.email %} <{{ deal.closer.email }}>{% endif %}\n\n"
                     "Deal notes:\n{{ deal.notes or '(none)' }}\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p>{{ deal.closer.name or 'Sales' }} won <b>{{ lead.company or "
                     "lead.full_name }}</b>{% if deal.value %} ({{ deal.value }} {{ deal.currency }}){% endif %}; the "
                     "customer is yours now.</p><ul><li>Customer: {{ lead.full_name or '-' }}{% if lead.title %}, "
                     "{{ lead.title }}{% endif %}{% if lead.company %}, {{ lead.company }}{% endif %}</li>"
                     "<li>Email: {{ lead.email or '-' }}</li><li>Phone: {{ lead.phone or '-' }}</li>"
                     "<li>Closed by: {{ deal.closer.name or deal.closer.id or '-' }}</li></ul>"
                     "<p>Deal notes:</p><p>{{ deal.notes or '(none)' }}</p>",
    },
    "milestone": {
        "subject": "Congratulations: {{ milestone.name }}",
        "text_body": "Well done {{ owner.name }}!\n\n{{ milestone.name }}{% if lead.company %} — {{ lead.company }}"
                     "{% endif %}.\n{% if milestone.quota %}" + QUOTA_LINE + "\n{% endif %}",
        "html_body": "<p>Well done {{ owner.name }}!</p><p>{{ milestone.name }}{% if lead.company %} &mdash; "
                     "{{ lead.company }}{% endif %}.</p>{% if milestone.quota %}<p>" + QUOTA_LINE + "</p>{% endif %}",
    },
    # Incentive programs (incentive-service): a quick, specific message right after the achievement.
    "program_started": {
        "subject": "{{ program.name }} has started",
        "text_body": "Hi {{ owner.name }},\n\n{{ program.name }} runs until {{ program.ends_at }}.\n"
                     "Points: {{ program.rules }}.\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p><b>{{ program.name }}</b> runs until {{ program.ends_at }}.</p>"
                     "<p>Points: {{ program.rules }}.</p>",
    },
    "program_rules_changed": {
        "subject": "{{ program.name }}: the scoring rules changed",
        "text_body": "Hi {{ owner.name }},\n\nFrom {{ program.effective_from }}: {{ program.rules }}.\n"
                     "Points you already earned stay as they are.\n",
        "html_body": "<p>Hi {{ owner.name }},</p><p>From {{ program.effective_from }}: {{ program.rules }}.</p>"
                     "<p>Points you already earned stay as they are.</p>",
    },
    "program_milestone": {
        "subject": "You reached {{ program.achievement }} in {{ program.name }}",
        "text_body": "Well done {{ owner.name }}: {{ program.achievement }} with {{ program.points }} points."
                     + PROGRAM_REWARD_LINE + "{% if program.next %}\nNext: {{ program.next }}.{% endif %}\n",
        "html_body": "<p>Well done {{ owner.name }}: <b>{{ program.achievement }}</b> with {{ program.points }} "
                     "points." + PROGRAM_REWARD_LINE + "</p>{% if program.next %}<p>Next: {{ program.next }}.</p>"
                     "{% endif %}",
    },
    "badge_earned": {
        "subject": "Badge earned: {{ program.achievement }}",
        "text_body": "Well done {{ owner.name }}: you earned the badge {{ program.achievement }} in "
                     "{{ program.name }}.\n",
        "html_body": "<p>Well done {{ owner.name }}: you earned the badge <b>{{ program.achievement }}</b> in "
                     "{{ program.name }}.</p>",
    },
    "program_won": {
        "subject": "Place {{ program.place }} in {{ program.name }}",
        "text_body": "Congratulations {{ owner.name }}: place {{ program.place }} in {{ program.name }} with "
                     "{{ program.points }} points." + PROGRAM_REWARD_LINE + "\n",
        "html_body": "<p>Congratulations {{ owner.name }}: place {{ program.place }} in <b>{{ program.name }}</b> "
                     "with {{ program.points }} points." + PROGRAM_REWARD_LINE + "</p>",
    },
}

EMPTY_TASK = {"id": None, "title": None, "due_at": None}
EMPTY_DEAL = {"value": None, "currency": None, "notes": None, "closer": {"id": None, "name": None, "email": None}}
EMPTY_MILESTONE = {"id": None, "name": None, "kind": None, "quota": None}
EMPTY_STAGE = {"id": None, "name": None, "pipeline_id": None}
EMPTY_PROGRAM = {"id": None, "name": None, "achievement": None, "points": None, "place": None, "badge": None,
                 "cash": None, "currency": None, "next": None, "rules": None, "ends_at": None,
                 "effective_from": None}


def unsubscribe_url(settings: Settings, org_id: str, lead_id: str) -> str:
    token = unsubscribe_token(settings.resolved_unsubscribe_secret, org_id, lead_id)
    return f"{settings.public_base_url.rstrip('/')}/v1/sequences/unsubscribe/{token}"


def variables(*, org_id: str, lead: KnownLead | None, owner: dict[str, Any] | None,
              stage: dict[str, Any] | None = None, task: dict[str, Any] | None = None,
              milestone: dict[str, Any] | None = None, unsubscribe: str | None = None,
              deal: dict[str, Any] | None = None, program: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"org_id": org_id, "lead": lead_variables(lead), "owner": owner_variables(owner),
            "deal": {**EMPTY_DEAL, **(deal or {})},
            "stage": {**EMPTY_STAGE, **(stage or {})}, "task": {**EMPTY_TASK, **(task or {})},
            "milestone": {**EMPTY_MILESTONE, **(milestone or {})}, "unsubscribe_url": unsubscribe,
            "program": {**EMPTY_PROGRAM, **(program or {})}}


def email_payload(settings: Settings, *, to_name: str | None, to_email: str, parts: dict[str, str],
                  variables_: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Render (raises TemplateError) into the stored payload the delivery worker sends as is."""
    rendered = render_email(parts, variables_)
    return {"to": formataddr((to_name or "", to_email)), "from": settings.smtp_from, "subject": rendered.subject,
            "html": rendered.html, "text": rendered.text, "headers": headers or {}}


def prospect_headers(url: str) -> dict[str, str]:
    # RFC 2369 + RFC 8058 one-click unsubscribe.
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


__all__ = ["DEFAULT_REP_TEMPLATES", "TemplateError", "email_payload", "prospect_headers",
           "unsubscribe_url", "variables"]
