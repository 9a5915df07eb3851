"""The service's HTTP API (docs/architecture.md: /v1/templates, /v1/sequences, /v1/mailchimp, /v1/milestones,
/v1/deliveries, /v1/webhook-subscriptions)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, HttpUrl, StrictBool, field_validator

from salesflow_shared.app import ContextDep, UowDep
from salesflow_shared.auth import AdminPrincipal, CurrentPrincipal, Principal
from salesflow_shared.clock import rfc3339
from salesflow_shared.contract import idempotency_exempt, returns
from salesflow_shared.currency import ExactCurrencyCode
from salesflow_shared.errors import (
    NotFound,
)
from salesflow_shared.idempotency import IdempotencyDep, once
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, page_from_rows
from salesflow_shared.preconditions import strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.mailchimp import base_url_for
from ..config import Settings
from ..domain.milestones import MILESTONE_KINDS
from ..domain.sequences import TRIGGERS
from ..domain.signing import read_unsubscribe_token
from ..service_layer import configuration as uc
from ..service_layer.handlers import unsubscribe_lead
from . import responses as R

# PostgreSQL text cannot hold NUL; documenting it lets clients (and fuzzers) know before they send.
NO_NUL = r"^[^\x00]*$"

router = APIRouter(prefix="/v1", tags=["notification-service"])

def _now(context: Any) -> datetime:
    return context.clock.now()


def _json(row: Any, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if key in drop:
            continue
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif isinstance(value, Decimal):
            value = str(value)
        out[key] = value
    return out


async def _created(uow: UnitOfWork, idem: Any, principal: Principal, scope: str, payload: Any,
                   create: Callable[[], Awaitable[dict[str, Any]]], headers: Callable[[dict[str, Any]], dict[str, str]]
                   | None = None) -> JSONResponse:
    replay = await idem.begin(uow.session, org_id=principal.org_id, scope=scope, payload=payload)
    if replay is not None:
        return replay
    body = await create()
    response = await idem.complete(uow.session, status_code=201, body=body,
                                   headers=headers(body) if headers else None)
    await uow.commit()
    return response


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    """Where a newest-first page (keyset on created_at, id) resumes."""
    after = decode_cursor(cursor, 2)
    return None if after is None else (datetime.fromisoformat(after[0]), after[1])


def _page(records: Sequence[Any], limit: int, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """`records` were read with limit + 1 rows, newest first."""
    page = page_from_rows([_json(asdict(r), drop=drop) for r in records], limit,
                          lambda i: [i["created_at"], i["id"]])
    return page.model_dump()


# ====================================================================== templates
class TemplateIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    key: str | None = Field(default=None, max_length=100, pattern=NO_NUL,
                            description="e.g. rep.lead_assigned, rep.milestone")
    audience: Literal["prospect", "rep"] = "prospect"
    subject: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)
    html_body: str = Field(min_length=1, max_length=200_000, pattern=NO_NUL)
    text_body: str = Field(min_length=1, max_length=200_000, pattern=NO_NUL)


# A template is checked by rendering it (one-line subject, known placeholders): beyond what its schema says.
TEMPLATE_RENDERED = ("subject", "html_body", "text_body")


def _etag(version: int) -> str:
    return strong_etag(version)


@router.post("/templates", status_code=201, summary="Create an email template (checked by rendering it)",
             operation_id="createTemplate", **returns(R.TemplateOut, status=201, etag=True,
                                                       checked_beyond_schema=TEMPLATE_RENDERED))
async def create_template(body: TemplateIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                          idem: IdempotencyDep) -> JSONResponse:
    values = body.model_dump()
    uc.check_template(values)  # refused before the key is looked at

    async def create() -> dict[str, Any]:
        return _json(asdict(await uc.create_template(uow, principal.org_id, values, _now(context))))
    return await _created(uow, idem, principal, "templates", values, create,
                          lambda b: {"ETag": _etag(b["version"])})


@router.get("/templates", summary="List templates", operation_id="listTemplates", **returns(R.TemplatePage))
async def list_templates(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                         cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.templates_page(uow.session, principal.org_id, limit, _after(cursor)), limit)


@router.get("/templates/{template_id}", summary="One template (ETag = its version)",
            operation_id="getTemplate", **returns(R.TemplateOut, etag=True))
async def get_template(template_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    row = await uc.find_template(uow, principal.org_id, template_id)
    return JSONResponse(_json(asdict(row)), headers={"ETag": uc.template_etag(row)})


@router.put("/templates/{template_id}", summary="Replace a template (If-Match required)",
            operation_id="replaceTemplate",
            **returns(R.TemplateOut, etag=True, checked_beyond_schema=TEMPLATE_RENDERED))
async def replace_template(template_id: str, body: TemplateIn, uow: UowDep, context: ContextDep,
                           principal: AdminPrincipal,
                           if_match: str | None = Header(default=None, alias="If-Match")) -> JSONResponse:
    await uc.replace_template(uow, principal.org_id, template_id, body.model_dump(), if_match=if_match,
                              now=_now(context))
    await uow.commit()
    row = await uc.find_template(uow, principal.org_id, template_id)
    return JSONResponse(_json(asdict(row)), headers={"ETag": uc.template_etag(row)})


# ====================================================================== sequences
class StepIn(BaseModel):
    template_id: str = Field(max_length=36, pattern=NO_NUL)
    delay_minutes: float = Field(default=0, ge=0, le=525_600)
    business_hours: StrictBool = False


class SequenceIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    trigger: Literal["stage_entry", "lead_created", "lead_lost", "lead_won"]
    pipeline_id: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    stage_id: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    source: str | None = Field(default=None, max_length=100, pattern=NO_NUL,
                               description="lead_created only: e.g. web_form")
    steps: list[StepIn] = Field(min_length=1, max_length=50)
    business_timezone: str | None = Field(default=None, max_length=64, pattern=NO_NUL,
                                          description="when the lead's time zone is unknown")
    active: StrictBool = True


@router.post("/sequences", status_code=201, summary="Create a sequence (trigger + steps with delays)",
             operation_id="createSequence", **returns(R.SequenceOut, status=201,
                                                      checked_beyond_schema=("steps", "stage_id", "business_timezone")))
async def create_sequence(body: SequenceIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                          idem: IdempotencyDep) -> JSONResponse:
    assert body.trigger in TRIGGERS
    values = body.model_dump(mode="json")

    async def create() -> dict[str, Any]:
        return _json(asdict(await uc.create_sequence(uow, principal.org_id, values, _now(context))))
    return await _created(uow, idem, principal, "sequences", values, create)


@router.get("/sequences", summary="List sequences", operation_id="listSequences", **returns(R.SequencePage))
async def list_sequences(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                         cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.sequences_page(uow.session, principal.org_id, limit, _after(cursor)), limit)


@router.get("/sequences/{sequence_id}", summary="One sequence", operation_id="getSequence", **returns(R.SequenceOut))
async def get_sequence(sequence_id: str, uow: UowDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return _json(asdict(await uc.find_sequence(uow, principal.org_id, sequence_id)))


@router.post("/sequences/{sequence_id}/deactivate", summary="Stop starting and running this sequence",
             operation_id="deactivateSequence", **returns(R.SequenceOut))
async def deactivate_sequence(sequence_id: str, uow: UowDep, context: ContextDep,
                              principal: AdminPrincipal, idem: IdempotencyDep) -> JSONResponse:
    async def deactivate() -> dict[str, Any]:
        return _json(asdict(await uc.deactivate_sequence(uow, principal.org_id, sequence_id, _now(context))))

    return await once(idem, uow, org_id=principal.org_id, scope=f"deactivate:{sequence_id}", payload=None,
                      act=deactivate)


@router.get("/sequences/{sequence_id}/enrollments", summary="Who is in this sequence, at which step, or why not",
            operation_id="listEnrollments", **returns(R.EnrollmentPage))
async def list_enrollments(sequence_id: str, uow: UowDep, principal: CurrentPrincipal,
                           lead_id: str | None = Query(default=None, max_length=100, pattern=NO_NUL),
                           limit: LimitParam = 50,
                           cursor: CursorParam = None) -> dict[str, Any]:
    await uc.find_sequence(uow, principal.org_id, sequence_id)
    return _page(await repository.enrollments_page(uow.session, principal, sequence_id, lead_id, limit,
                                                   _after(cursor)), limit)


# A browser (Accept: text/html) gets a page; a mail client's one-click POST gets JSON.
UNSUBSCRIBE_HTML: dict[str, Any] = {"responses": {"200": {"content": {"text/html": {"schema": {"type": "string"}}}}},
                                    # An Idempotency-Key is scoped to its caller (org and token subject); this
                                    # public link has no caller, so one visitor's key would replay another's answer.
                                    # Nothing is lost: unsubscribing again changes nothing and answers the same.
                                    **idempotency_exempt(
                                        "public one-click link (RFC 8058) with no caller to scope a key to; "
                                        "naturally idempotent: a repeat changes nothing and answers the same")}
_UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post"><p>Stop receiving these emails?</p><button type="submit">Unsubscribe</button></form>
</body></html>"""


@router.get("/sequences/unsubscribe/{token}", response_class=HTMLResponse, summary="Unsubscribe page (public)",
            operation_id="getUnsubscribePage", **returns(R.UNSUBSCRIBE_PAGE, media_type="text/html"))
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    # A GET only shows a button: link scanners and prefetchers must not unsubscribe anyone.
    if read_unsubscribe_token(request.app.state.settings.resolved_unsubscribe_secret, token) is None:
        raise NotFound("this unsubscribe link is not valid")
    return HTMLResponse(_UNSUBSCRIBE_PAGE)


@router.post("/sequences/unsubscribe/{token}", summary="Unsubscribe (public; RFC 8058 one-click)",
             operation_id="unsubscribe", openapi_extra=UNSUBSCRIBE_HTML, **returns(R.Unsubscribed))
async def unsubscribe(token: str, request: Request, uow: UowDep, context: ContextDep) -> Response:
    found = read_unsubscribe_token(context.settings_as(Settings).resolved_unsubscribe_secret, token)
    if found is None:
        raise NotFound("this unsubscribe link is not valid")
    org_id, lead_id = found
    if await unsubscribe_lead(uow, org_id=org_id, lead_id=lead_id, now=_now(context)):
        await uow.commit()
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse("<!doctype html><p>You are unsubscribed.</p>")
    return JSONResponse({"unsubscribed": True})


# ====================================================================== Mailchimp
class MailchimpSettingsIn(BaseModel):
    api_key: str = Field(min_length=5, max_length=200, pattern=NO_NUL)
    nurture_list_id: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    nurture_tag: str | None = Field(default="nurture", max_length=100, pattern=NO_NUL)

    @field_validator("api_key")
    @classmethod
    def _has_dc(cls, value: str) -> str:
        base_url_for(value)  # raises ValueError → 422 naming api_key
        return value


def _mailchimp_json(account: repository.MailchimpAccount) -> dict[str, Any]:
    out = _json(asdict(account), drop=("api_key",))
    out["api_key_hint"] = "…" + account.api_key[-8:]
    return out


@router.put("/mailchimp/settings", summary="Set the org's Mailchimp API key and nurture list "
            "(If-Match: the ETag read, or \"0\" before the first setting)",
            operation_id="putMailchimpSettings", **returns(R.MailchimpSettingsOut, etag=True,
                                                           checked_beyond_schema=("api_key",)))
async def put_mailchimp_settings(body: MailchimpSettingsIn, uow: UowDep, context: ContextDep,
                                 principal: AdminPrincipal,
                                 if_match: str | None = Header(default=None, alias="If-Match")) -> JSONResponse:
    account = await uc.save_mailchimp_settings(uow, principal.org_id, body.model_dump(), if_match=if_match,
                                               now=_now(context))
    await uow.commit()
    return JSONResponse(_mailchimp_json(account), headers={"ETag": uc.mailchimp_settings_etag(account)})


@router.get("/mailchimp/settings", summary="The org's Mailchimp settings (the key is never shown)",
            operation_id="getMailchimpSettings", **returns(R.MailchimpSettingsOut, etag=True))
async def get_mailchimp_settings(uow: UowDep, principal: AdminPrincipal) -> JSONResponse:
    account = await repository.get_mailchimp_account(uow.session, principal.org_id)
    if account is None:
        raise NotFound("Mailchimp is not configured")
    return JSONResponse(_mailchimp_json(account), headers={"ETag": uc.mailchimp_settings_etag(account)})


class MailchimpRuleIn(BaseModel):
    trigger: Literal["stage_entry", "stage_exit", "won", "lost", "disqualified", "reopened"] = Field(
        default="stage_entry", description="the moment of the lead's life the rule holds from: entering or having "
                                           "left `stage_id`, or an outcome (no stage)")
    pipeline_id: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    stage_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=NO_NUL)
    action: Literal["subscribe", "unsubscribe"]
    list_id: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    tags: list[str] = Field(default_factory=list, max_length=50)
    merge_fields: dict[str, str] = Field(default_factory=lambda: {"FNAME": "first_name", "LNAME": "last_name"})
    status_if_new: Literal["subscribed", "pending", "transactional"] = "subscribed"


@router.post("/mailchimp/rules", status_code=201,
             summary="Keep a lead on (or off) a list from a stage entry or exit, or an outcome",
             operation_id="createMailchimpRule", **returns(R.MailchimpRuleOut, status=201,
                                                           checked_beyond_schema=("stage_id", "pipeline_id")))
async def create_mailchimp_rule(body: MailchimpRuleIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                                idem: IdempotencyDep) -> JSONResponse:
    values = body.model_dump()
    await uc.check_mailchimp_rule(uow, principal.org_id, values)  # refused before the key is looked at

    async def create() -> dict[str, Any]:
        return _json(asdict(await uc.create_mailchimp_rule(uow, principal.org_id, values, _now(context))))
    return await _created(uow, idem, principal, "mailchimp_rules", values, create)


@router.get("/mailchimp/rules", summary="List Mailchimp sync rules",
            operation_id="listMailchimpRules", **returns(R.MailchimpRulePage))
async def list_mailchimp_rules(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                               cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.mailchimp_rules_page(uow.session, principal.org_id, limit, _after(cursor)), limit)


@router.delete("/mailchimp/rules/{rule_id}", status_code=204, summary="Delete a Mailchimp sync rule",
               operation_id="deleteMailchimpRule")
async def delete_mailchimp_rule(rule_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    if not await repository.delete_mailchimp_rule(uow.session, principal.org_id, rule_id):
        raise NotFound(f"no Mailchimp rule {rule_id}")
    await uow.commit()
    return Response(status_code=204)


# ====================================================================== milestones
def _every_channel() -> list[Literal["email", "webhook"]]:
    return ["email", "webhook"]


class MilestoneIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    kind: Literal["deal_won", "stage_exit_above_value", "first_deal_of_quarter", "quota_reached"] = Field(
        description="quota_reached: a rep's quota was reached (QuotaReached from metrics-service; min_value then "
                    "compares with the quota's amount)")
    stage_id: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    min_value: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    currency: ExactCurrencyCode | None = None
    channels: list[Literal["email", "webhook"]] = Field(default_factory=_every_channel, min_length=1)
    active: StrictBool = True


@router.post("/milestones", status_code=201, summary="Create a milestone rule (fires once per deal, quarter or quota)",
             operation_id="createMilestoneRule", **returns(R.MilestoneRuleOut, status=201,
                                                           checked_beyond_schema=("stage_id", "min_value")))
async def create_milestone(body: MilestoneIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                           idem: IdempotencyDep) -> JSONResponse:
    assert body.kind in MILESTONE_KINDS
    values = body.model_dump()
    uc.check_milestone_rule(values)  # refused before the key is looked at

    async def create() -> dict[str, Any]:
        return _json(asdict(await uc.create_milestone_rule(uow, principal.org_id, values, _now(context))))
    return await _created(uow, idem, principal, "milestones", body.model_dump(mode="json"), create)


@router.get("/milestones", summary="List milestone rules",
            operation_id="listMilestoneRules", **returns(R.MilestoneRulePage))
async def list_milestones(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                          cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.milestone_rules_page(uow.session, principal.org_id, limit, _after(cursor)), limit)


# ====================================================================== webhook subscriptions
class WebhookSubscriptionIn(BaseModel):
    url: HttpUrl
    reasons: list[Literal["lead_assigned", "customer_handover", "task_assigned", "task_due", "task_overdue",
                          "milestone", "program_started", "program_rules_changed", "program_milestone",
                          "badge_earned", "program_won"]] = Field(min_length=1)
    rep_id: str | None = Field(default=None, max_length=100, pattern=NO_NUL)
    secret: str | None = Field(default=None, min_length=16, max_length=200, pattern=NO_NUL)


@router.post("/webhook-subscriptions", status_code=201,
             summary="Send rep notifications to a URL, signed with HMAC (the secret is shown once)",
             description="The URL must lead to public addresses only (not loopback, private, link-local, "
                         "multicast, reserved or unspecified; a host name is resolved and each address checked), "
                         "unless SALESFLOW_WEBHOOK_ALLOW_PRIVATE_NETWORKS allows them; otherwise 422 naming `url`. "
                         "The check is repeated before each delivery.",
             operation_id="createWebhookSubscription", **returns(R.WebhookSubscriptionCreated, status=201))
async def create_webhook_subscription(body: WebhookSubscriptionIn, uow: UowDep, context: ContextDep,
                                      principal: AdminPrincipal, idem: IdempotencyDep) -> JSONResponse:
    await uc.check_webhook_target(str(body.url), body.url.host, private_networks_allowed=context.settings_as(
        Settings).webhooks_may_reach_private_networks)

    async def create() -> dict[str, Any]:
        return _json(asdict(await uc.subscribe_webhook(uow, principal.org_id, url=str(body.url),
                                                        reasons=list(body.reasons), rep_id=body.rep_id,
                                                        secret=body.secret, now=_now(context))))
    return await _created(uow, idem, principal, "webhook_subscriptions", body.model_dump(mode="json"), create)


@router.get("/webhook-subscriptions", summary="List webhook subscriptions (secrets are not shown)",
            operation_id="listWebhookSubscriptions", **returns(R.WebhookSubscriptionPage))
async def list_webhook_subscriptions(uow: UowDep, principal: AdminPrincipal, limit: LimitParam = 50,
                                     cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.webhook_subscriptions_page(uow.session, principal.org_id, limit, _after(cursor)),
                 limit, drop=("secret",))


@router.delete("/webhook-subscriptions/{subscription_id}", status_code=204, summary="Remove a webhook subscription",
               operation_id="deleteWebhookSubscription")
async def delete_webhook_subscription(subscription_id: str, uow: UowDep, principal: AdminPrincipal) -> Response:
    if not await repository.deactivate_webhook_subscription(uow.session, principal.org_id, subscription_id):
        raise NotFound(f"no webhook subscription {subscription_id}")
    await uow.commit()
    return Response(status_code=204)


# ====================================================================== delivery log
@router.get("/deliveries", summary="What was sent or synced, to whom, why, and the outcome",
            operation_id="listDeliveries", **returns(R.DeliveryPage))
async def list_deliveries(uow: UowDep, principal: CurrentPrincipal,
                          lead_id: str | None = Query(default=None, max_length=100, pattern=NO_NUL),
                          status: Literal["pending", "sending", "sent", "failed", "cancelled"] | None = None,
                          limit: LimitParam = 50, cursor: CursorParam = None) -> dict[str, Any]:
    records = await repository.deliveries_page(
        uow.session, principal.org_id, lead_id=lead_id, status=status,
        rep_id=None if principal.sees_whole_org else principal.user_id, limit=limit, after=_after(cursor))
    return _page(records, limit, drop=("payload", "idem_key"))
