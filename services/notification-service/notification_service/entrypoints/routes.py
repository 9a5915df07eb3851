"""The service's HTTP API (docs/architecture.md: /v1/templates, /v1/sequences, /v1/mailchimp, /v1/milestones,
/v1/deliveries, /v1/webhook-subscriptions)."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
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
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from salesflow_shared.idempotency import IdempotencyDep, once
from salesflow_shared.pagination import CursorParam, LimitParam, decode_cursor, page_from_rows
from salesflow_shared.preconditions import check_if_match, strong_etag
from salesflow_shared.uow import UnitOfWork

from ..adapters import repository
from ..adapters.mailchimp import base_url_for
from ..adapters.webhooks import WebhookTargetRefused, checked_addresses
from ..config import Settings
from ..domain.mailchimp_lists import OUTCOME_WORDS, STAGE_TRIGGERS
from ..domain.milestones import MILESTONE_KINDS
from ..domain.rendering import validate_template
from ..domain.sequences import TRIGGERS
from ..domain.signing import read_unsubscribe_token
from ..domain.timing import zone
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


def _check_template(body: TemplateIn) -> None:
    errors = validate_template(body.model_dump())
    if errors:
        raise ValidationFailed("; ".join(str(e) for e in errors),
                               errors=[FieldError(e.part, e.message) for e in errors])


def _etag(version: int) -> str:
    return strong_etag(version)


async def _template(uow: UnitOfWork, org_id: str, template_id: str) -> repository.Template:
    template = await repository.get_template(uow.session, org_id, template_id=template_id)
    if template is None:
        raise NotFound(f"no template {template_id}")
    return template


async def _key_free(uow: UnitOfWork, org_id: str, key: str | None, except_id: str | None = None) -> None:
    if key is not None and await repository.template_key_taken(uow.session, org_id, key, except_id=except_id):
        raise Conflict(f"another template already has the key {key!r}")


@router.post("/templates", status_code=201, summary="Create an email template (checked by rendering it)",
             operation_id="createTemplate", **returns(R.TemplateOut, status=201, etag=True,
                                                       checked_beyond_schema=TEMPLATE_RENDERED))
async def create_template(body: TemplateIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                          idem: IdempotencyDep) -> JSONResponse:
    _check_template(body)

    async def create() -> dict[str, Any]:
        await _key_free(uow, principal.org_id, body.key)
        now = _now(context)
        template = repository.Template(id=str(uuid.uuid4()), org_id=principal.org_id, **body.model_dump(),
                                       version=1, created_at=now, updated_at=now)
        await repository.add_template(uow.session, template)
        return _json(asdict(template))
    return await _created(uow, idem, principal, "templates", body.model_dump(), create,
                          lambda b: {"ETag": _etag(b["version"])})


@router.get("/templates", summary="List templates", operation_id="listTemplates", **returns(R.TemplatePage))
async def list_templates(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                         cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.templates_page(uow.session, principal.org_id, limit, _after(cursor)), limit)


@router.get("/templates/{template_id}", summary="One template (ETag = its version)",
            operation_id="getTemplate", **returns(R.TemplateOut, etag=True))
async def get_template(template_id: str, uow: UowDep, principal: CurrentPrincipal) -> JSONResponse:
    row = await _template(uow, principal.org_id, template_id)
    return JSONResponse(_json(asdict(row)), headers={"ETag": _etag(row.version)})


@router.put("/templates/{template_id}", summary="Replace a template (If-Match required)",
            operation_id="replaceTemplate",
            **returns(R.TemplateOut, etag=True, checked_beyond_schema=TEMPLATE_RENDERED))
async def replace_template(template_id: str, body: TemplateIn, uow: UowDep, context: ContextDep,
                           principal: AdminPrincipal,
                           if_match: str | None = Header(default=None, alias="If-Match")) -> JSONResponse:
    row = await _template(uow, principal.org_id, template_id)
    check_if_match(if_match, _etag(row.version), what="template")
    _check_template(body)
    await _key_free(uow, principal.org_id, body.key, except_id=template_id)
    if not await repository.replace_template(uow.session, principal.org_id, template_id, version=row.version,
                                             values=body.model_dump(), now=_now(context)):
        raise PreconditionFailed("the template changed since you read it")
    await uow.commit()
    row = await _template(uow, principal.org_id, template_id)
    return JSONResponse(_json(asdict(row)), headers={"ETag": _etag(row.version)})


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


async def _check_sequence(uow: UnitOfWork, org_id: str, body: SequenceIn) -> None:
    errors: list[FieldError] = []
    if body.trigger == "stage_entry" and not body.stage_id:
        errors.append(FieldError("stage_id", "a stage_entry sequence needs the stage it starts in"))
    if body.trigger != "stage_entry" and body.stage_id:
        errors.append(FieldError("stage_id", "only stage_entry sequences start in a stage"))
    if body.business_timezone and zone(body.business_timezone, "").key != body.business_timezone:
        errors.append(FieldError("business_timezone", "not an IANA time zone"))
    ids = {s.template_id for s in body.steps}
    found = await repository.template_audiences(uow.session, org_id, ids)
    for i, step in enumerate(body.steps):
        if step.template_id not in found:
            errors.append(FieldError(f"steps.{i}.template_id", "no such template"))
        elif found[step.template_id] != "prospect":
            errors.append(FieldError(f"steps.{i}.template_id", "sequence steps need a prospect template"))
    if errors:
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


@router.post("/sequences", status_code=201, summary="Create a sequence (trigger + steps with delays)",
             operation_id="createSequence", **returns(R.SequenceOut, status=201,
                                                      checked_beyond_schema=("steps", "stage_id", "business_timezone")))
async def create_sequence(body: SequenceIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                          idem: IdempotencyDep) -> JSONResponse:
    assert body.trigger in TRIGGERS

    async def create() -> dict[str, Any]:
        await _check_sequence(uow, principal.org_id, body)
        now = _now(context)
        sequence = repository.SequenceRecord(id=str(uuid.uuid4()), org_id=principal.org_id,
                                             **body.model_dump(mode="json"), created_at=now, updated_at=now)
        await repository.add_sequence(uow.session, sequence)
        return _json(asdict(sequence))
    return await _created(uow, idem, principal, "sequences", body.model_dump(mode="json"), create)


@router.get("/sequences", summary="List sequences", operation_id="listSequences", **returns(R.SequencePage))
async def list_sequences(uow: UowDep, principal: CurrentPrincipal, limit: LimitParam = 50,
                         cursor: CursorParam = None) -> dict[str, Any]:
    return _page(await repository.sequences_page(uow.session, principal.org_id, limit, _after(cursor)), limit)


async def _sequence(uow: UnitOfWork, org_id: str, sequence_id: str) -> repository.SequenceRecord:
    sequence = await repository.get_sequence(uow.session, org_id, sequence_id)
    if sequence is None:
        raise NotFound(f"no sequence {sequence_id}")
    return sequence


@router.get("/sequences/{sequence_id}", summary="One sequence", operation_id="getSequence", **returns(R.SequenceOut))
async def get_sequence(sequence_id: str, uow: UowDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return _json(asdict(await _sequence(uow, principal.org_id, sequence_id)))


@router.post("/sequences/{sequence_id}/deactivate", summary="Stop starting and running this sequence",
             operation_id="deactivateSequence", **returns(R.SequenceOut))
async def deactivate_sequence(sequence_id: str, uow: UowDep, context: ContextDep,
                              principal: AdminPrincipal, idem: IdempotencyDep) -> JSONResponse:
    async def deactivate() -> dict[str, Any]:
        await _sequence(uow, principal.org_id, sequence_id)
        await repository.deactivate_sequence(uow.session, principal.org_id, sequence_id, _now(context))
        return _json(asdict(await _sequence(uow, principal.org_id, sequence_id)))

    return await once(idem, uow, org_id=principal.org_id, scope=f"deactivate:{sequence_id}", payload=None,
                      act=deactivate)


@router.get("/sequences/{sequence_id}/enrollments", summary="Who is in this sequence, at which step, or why not",
            operation_id="listEnrollments", **returns(R.EnrollmentPage))
async def list_enrollments(sequence_id: str, uow: UowDep, principal: CurrentPrincipal,
                           lead_id: str | None = Query(default=None, max_length=100, pattern=NO_NUL),
                           limit: LimitParam = 50,
                           cursor: CursorParam = None) -> dict[str, Any]:
    await _sequence(uow, principal.org_id, sequence_id)
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


def _settings_etag(account: repository.MailchimpAccount) -> str:
    updated = account.updated_at
    updated = (updated if updated.tzinfo else updated.replace(tzinfo=UTC)).astimezone(UTC)  # SQLite: naive
    return '"' + hashlib.sha256(f"{account.api_key}|{account.nurture_list_id}|{account.nurture_tag}|"
                                f"{updated.isoformat()}".encode()).hexdigest()[:16] + '"'


@router.put("/mailchimp/settings", summary="Set the org's Mailchimp API key and nurture list "
            "(If-Match: the ETag read, or \"0\" before the first setting)",
            operation_id="putMailchimpSettings", **returns(R.MailchimpSettingsOut, etag=True,
                                                           checked_beyond_schema=("api_key",)))
async def put_mailchimp_settings(body: MailchimpSettingsIn, uow: UowDep, context: ContextDep,
                                 principal: AdminPrincipal,
                                 if_match: str | None = Header(default=None, alias="If-Match")) -> JSONResponse:
    now = _now(context)
    values = {**body.model_dump(), "updated_at": now}
    current = await repository.get_mailchimp_account(uow.session, principal.org_id, for_update=True)
    # None for the first setting: If-Match "0", so two admins setting it at once cannot both win
    check_if_match(if_match, _settings_etag(current) if current is not None else None, what="Mailchimp settings")
    account = repository.MailchimpAccount(org_id=principal.org_id, **values)
    await repository.save_mailchimp_account(uow.session, account, exists=current is not None)
    await uow.commit()
    return JSONResponse(_mailchimp_json(account), headers={"ETag": _settings_etag(account)})


@router.get("/mailchimp/settings", summary="The org's Mailchimp settings (the key is never shown)",
            operation_id="getMailchimpSettings", **returns(R.MailchimpSettingsOut, etag=True))
async def get_mailchimp_settings(uow: UowDep, principal: AdminPrincipal) -> JSONResponse:
    account = await repository.get_mailchimp_account(uow.session, principal.org_id)
    if account is None:
        raise NotFound("Mailchimp is not configured")
    return JSONResponse(_mailchimp_json(account), headers={"ETag": _settings_etag(account)})


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
    await _check_rule_references(uow, principal.org_id, body)

    async def create() -> dict[str, Any]:
        rule = repository.MailchimpRule(id=str(uuid.uuid4()), org_id=principal.org_id, **body.model_dump(),
                                        created_at=_now(context))
        await repository.add_mailchimp_rule(uow.session, rule)
        return _json(asdict(rule))
    return await _created(uow, idem, principal, "mailchimp_rules", body.model_dump(), create)


async def _check_rule_references(uow: Any, org_id: str, body: MailchimpRuleIn) -> None:
    """422 naming the field: the pipeline must be one this org has (and has not archived), a stage rule needs a
    stage of that pipeline (of any of the org's pipelines when it names none), an outcome rule has no stage, and an
    outcome is not a stage. This service knows the org's pipelines from pipeline-service's PipelineDefined events
    (and a pipeline's stages from its leads' StageAdvanced until then), so a pipeline created a moment ago may not
    be known here for that moment."""
    pipelines = await repository.pipeline_stage_ids(uow.session, org_id)
    if body.pipeline_id is not None and body.pipeline_id not in pipelines:
        raise ValidationFailed.single("pipeline_id", f"no pipeline '{body.pipeline_id}' in this org (or it is "
                                                     "archived)")
    if body.trigger in STAGE_TRIGGERS:
        if body.stage_id is None:
            raise ValidationFailed.single("stage_id", f"a {body.trigger} rule names the stage")
        if body.stage_id.lower() in OUTCOME_WORDS:
            raise ValidationFailed.single("stage_id", f"'{body.stage_id}' is not a stage but an outcome: use "
                                                      f"trigger '{body.stage_id.lower()}' without a stage_id")
        if body.pipeline_id is not None:
            if body.stage_id not in pipelines[body.pipeline_id]:
                raise ValidationFailed.single("stage_id",
                                              f"no stage '{body.stage_id}' in pipeline '{body.pipeline_id}'")
        elif not any(body.stage_id in stage_ids for stage_ids in pipelines.values()):
            raise ValidationFailed.single("stage_id", f"no stage '{body.stage_id}' in any pipeline of this org")
    elif body.stage_id is not None:
        raise ValidationFailed.single("stage_id", f"a {body.trigger} rule holds in any stage: leave stage_id out")


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
    if body.kind == "stage_exit_above_value" and not body.stage_id:
        raise ValidationFailed.single("stage_id", "a stage_exit_above_value rule needs the stage")

    async def create() -> dict[str, Any]:
        rule = repository.MilestoneRuleRecord(id=str(uuid.uuid4()), org_id=principal.org_id, **body.model_dump(),
                                              created_at=_now(context))
        await repository.add_milestone_rule(uow.session, rule)
        return _json(asdict(rule))
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
    if not context.settings_as(Settings).webhooks_may_reach_private_networks:
        try:
            await checked_addresses(str(body.url))
        except WebhookTargetRefused as exc:
            raise ValidationFailed.single("url", f"must lead to a public address: {exc}") from exc
        except OSError as exc:
            raise ValidationFailed.single("url", f"the host {body.url.host} does not resolve") from exc

    async def create() -> dict[str, Any]:
        subscription = repository.WebhookSubscription(
            id=str(uuid.uuid4()), org_id=principal.org_id, url=str(body.url),
            secret=body.secret or secrets.token_urlsafe(32), reasons=list(body.reasons), rep_id=body.rep_id,
            active=True, created_at=_now(context))
        await repository.add_webhook_subscription(uow.session, subscription)
        return _json(asdict(subscription))
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
