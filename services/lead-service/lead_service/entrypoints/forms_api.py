"""/v1/forms: form definitions (admin), public submissions (signed JSON or browser posts), failed-submission
listing and reprocessing."""
from __future__ import annotations

import time
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy.exc import DBAPIError

from salesflow_shared.app import ContextDep, ServiceContext, UowDep
from salesflow_shared.auth import AdminPrincipal
from salesflow_shared.client_address import client_ip
from salesflow_shared.contract import returns
from salesflow_shared.errors import (
    FieldError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from salesflow_shared.idempotency import IdempotencyDep, once, once_across
from salesflow_shared.pagination import CursorParam, LimitParam
from salesflow_shared.signatures import SignatureError, verify

from ..adapters.repository import forms as form_repo
from ..adapters.repository import new_id
from ..adapters.repository.forms import Submission
from ..collaborators import collaborators
from ..config import Settings
from ..domain import cors
from ..domain.cors import MAX_ALLOWED_ORIGINS, normalise_origin
from ..domain.forms import PUBLIC_KEY_FIELD, SUBMISSION_ID_FIELD, Form
from ..domain.mapping import validate_spec
from ..service_layer import reprocessing
from ..service_layer.intake import (
    PayloadError,
    Received,
    SubmissionState,
    find_duplicate,
    new_public_key,
    new_signing_secret,
    parse_payload,
    scoped_dedup_key,
    store_submission,
    submission_to_dict,
)
from ..service_layer.views import check_if_match
from . import responses as R
from .common import etag_header, json_with_etag, page_body

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/forms", tags=["forms"])
# The public submission endpoint is the hot path: its own router, matched before every other route.
intake_router = APIRouter(prefix="/v1/forms", tags=["forms"])
ACCEPTED_TYPES = ("application/json", "application/x-www-form-urlencoded")


class SignatureRejected(ServiceError):
    status, slug, title = 401, "bad-signature", "The submission's signature was not accepted"


class FormCache:
    """Forms by id for the public submission endpoint (edits here invalidate at once; 5 s elsewhere)."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Form | None]] = {}

    async def get(self, context: ServiceContext, form_id: str) -> Form | None:
        hit = self._entries.get(form_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        async with context.database.session() as session:
            form = await form_repo.find_form(session, form_id)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[form_id] = (time.monotonic(), form)
        return form

    def invalidate(self, form_id: str) -> None:
        self._entries.pop(form_id, None)


Origin = Annotated[str, AfterValidator(normalise_origin)]


class FormIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=200)
    mapping: dict[str, str] = Field(default_factory=dict, max_length=200,
                                    description="incoming field name → lead field (e.g. 'email': 'contact.email')")
    defaults: dict[str, Any] = Field(default_factory=dict, max_length=50,
                                     description="lead field → value when absent (source, product_line, ...)")
    required: list[str] = Field(default_factory=list, max_length=50)
    honeypot_field: str = Field("website", pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$")
    redirect_url: HttpUrl | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=100_000)
    allowed_origins: list[Origin] = Field(default_factory=list, max_length=MAX_ALLOWED_ORIGINS, description=(
        "pages (origins such as https://www.example.com) whose script may post submissions (CORS)"))


class FormPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(None, min_length=1, max_length=200)
    mapping: dict[str, str] | None = Field(None, max_length=200)
    defaults: dict[str, Any] | None = Field(None, max_length=50)
    required: list[str] | None = Field(None, max_length=50)
    honeypot_field: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$")
    redirect_url: HttpUrl | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=100_000)
    allowed_origins: list[Origin] | None = Field(None, max_length=MAX_ALLOWED_ORIGINS)


# The public submission endpoint reads its body itself (signatures cover the raw bytes), so its contract is
# declared here: both bodies, the signature and dedup headers, and the browser answers (redirect or HTML page).
SUBMISSION_CONTRACT: dict[str, Any] = {
    "security": [],
    "parameters": [
        {"name": "Salesflow-Signature", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" with the form's signing "
                        "secret>; without it the post is a browser post and needs the form's public key"},
        {"name": "Idempotency-Key", "in": "header", "required": False,
         "schema": {"type": "string", "maxLength": 255},
         "description": "the same key again answers the first submission's result (no second lead)"},
        {"name": "Salesflow-Submission-Id", "in": "header", "required": False,
         "schema": {"type": "string", "maxLength": 255}, "description": "the same as Idempotency-Key"},
        {"name": "key", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "the form's public key (browser posts may send it as a field instead)"},
    ],
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "additionalProperties": True,
                                        "description": "the form's fields, named as in its mapping"}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": True,
                                                         "description": "the form's fields (browser post)"}},
    }},
    "responses": {
        "200": {"description": "open lead updated (or, for a browser asking for HTML, a thank-you page)",
                "content": {"text/html": {"schema": {"type": "string"}}}},
        "303": {"description": "browser post to a form with a redirect URL: go there (submission and status "
                               "in the query)",
                "headers": {"Location": {"$ref": "#/components/headers/Location"}}},
        "401": {"description": "missing public key or a signature that is not accepted"},
        "429": {"description": "too many browser posts to this form or from this address (Retry-After; the "
                               "RateLimit fields describe the bucket that refused)"},
    },
}


def _check_spec(mapping: dict[str, str], defaults: dict[str, Any], required: list[str]) -> None:
    problems = validate_spec(mapping, defaults, required)
    if problems:
        errors = [FieldError(p.field, p.message) for p in problems]
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def _form_response(form: Form, status_code: int = 200) -> JSONResponse:
    return json_with_etag(form.as_dict(), status_code)


@router.post("", status_code=201, summary="Define a web form: mapping, defaults, required fields",
             operation_id="createForm", **returns(R.FormOut, status=201, etag=True,
                                                  checked_beyond_schema=("mapping", "defaults", "required",
                                                                         "allowed_origins")))
async def create_form(body: FormIn, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                      idem: IdempotencyDep) -> JSONResponse:
    _check_spec(body.mapping, body.defaults, body.required)
    async def act() -> dict[str, Any]:
        default_rate_limit = context.settings_as(Settings).form_rate_limit_per_minute
        new = Form(id=new_id(), org_id=principal.org_id, name=body.name, mapping=body.mapping,
                   defaults=body.defaults, required=body.required, public_key=new_public_key(),
                   signing_secret=new_signing_secret(), honeypot_field=body.honeypot_field,
                   redirect_url=str(body.redirect_url) if body.redirect_url else None,
                   rate_limit_per_minute=body.rate_limit_per_minute or default_rate_limit,
                   allowed_origins=list(dict.fromkeys(body.allowed_origins)), version=1)
        await form_repo.insert_form(uow.session, new, uow.clock.now())
        return (await _own_form(uow, new.id, principal.org_id)).as_dict()

    return await once(idem, uow, org_id=principal.org_id, scope="forms.create", payload=body.model_dump(mode="json"),
                      act=act, status_code=201, headers=etag_header)


@router.get("", summary="The org's forms", operation_id="listForms", **returns(R.FormPage))
async def list_forms(uow: UowDep, principal: AdminPrincipal, limit: LimitParam = 50,
                     cursor: CursorParam = None) -> dict[str, Any]:
    page = await form_repo.forms_page(uow.session, principal.org_id, limit=limit, cursor=cursor)
    return page_body(page, Form.as_dict)


async def _own_form(uow: Any, form_id: str, org_id: str) -> Form:
    form = await form_repo.find_form(uow.session, form_id, org_id)
    if form is None:
        raise NotFound(f"no form {form_id}")
    return form


@router.get("/{form_id}", summary="A form, with its public key and signing secret",
            operation_id="getForm", **returns(R.FormOut, etag=True))
async def get_form(form_id: str, uow: UowDep, principal: AdminPrincipal) -> JSONResponse:
    return _form_response(await _own_form(uow, form_id, principal.org_id))


@router.patch("/{form_id}", summary="Fix or change a form (If-Match)",
              operation_id="updateForm", **returns(R.FormOut, etag=True,
                                                   checked_beyond_schema=("mapping", "defaults", "required",
                                                                          "allowed_origins")))
async def patch_form(form_id: str, body: FormPatch, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                     if_match: Annotated[str | None, Header()] = None) -> JSONResponse:
    form = await _own_form(uow, form_id, principal.org_id)
    check_if_match(if_match, form.version)
    sent = body.model_dump(exclude_unset=True, mode="json")
    if "allowed_origins" in sent:
        sent["allowed_origins"] = list(dict.fromkeys(sent["allowed_origins"] or []))
    _check_spec(sent.get("mapping", form.mapping), sent.get("defaults", form.defaults),
                sent.get("required", form.required))
    await form_repo.update_form(uow.session, principal.org_id, form_id, version=form.version, now=uow.clock.now(),
                                **sent)
    await uow.commit()
    collaborators(context).form_cache.invalidate(form_id)
    return _form_response(await _own_form(uow, form_id, principal.org_id))


@router.post("/{form_id}/rotate-secret", summary="A new signing secret (the old one stops working)",
             operation_id="rotateFormSecret", **returns(R.FormOut, etag=True))
async def rotate_secret(form_id: str, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                        idem: IdempotencyDep) -> JSONResponse:
    form = await _own_form(uow, form_id, principal.org_id)
    # A retry with the same key gets the secret the first request made, not a third one.
    async def act() -> dict[str, Any]:
        await form_repo.update_form(uow.session, principal.org_id, form_id, version=form.version,
                                    now=uow.clock.now(), only_at_version=False, signing_secret=new_signing_secret())
        return (await _own_form(uow, form_id, principal.org_id)).as_dict()

    response = await once(idem, uow, org_id=principal.org_id, scope=f"forms.rotate:{form_id}", payload={}, act=act,
                          headers=etag_header)
    collaborators(context).form_cache.invalidate(form_id)
    return response


# ------------------------------------------------------------------------------------------- intake
async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a submission may have at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a submission may have at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _browser_reply(request: Request, form: Form, body: dict[str, Any], status_code: int) -> Response:
    if form.redirect_url:
        separator = "&" if "?" in form.redirect_url else "?"
        query = urlencode({"submission": body["submission_id"], "status": body["status"]})
        return RedirectResponse(f"{form.redirect_url}{separator}{query}", status_code=303)
    if "text/html" in request.headers.get("accept", ""):
        message = "Thank you, we received your request." if body["status"] != "failed" else \
            "We received your request but some fields need attention: " + \
            "; ".join(f"{e['field']}: {e['message']}" for e in body.get("errors", []))
        return HTMLResponse(f"<!doctype html><title>{escape(form.name)}</title><p>{escape(message)}</p>",
                            status_code=200 if body["status"] != "failed" else 422)
    return JSONResponse(body, status_code=status_code)


@intake_router.post("/{form_id}/submissions", summary="Submit a form: signed JSON webhook or browser form post",
                    operation_id="submitForm", openapi_extra=SUBMISSION_CONTRACT,
                    **returns(R.SubmissionResult, status=201, description="lead created",
                              also={200: R.SubmissionResult, 202: R.SubmissionResult},
                              errors=(403,)))  # a browser post from an origin the form does not allow
async def submit(form_id: str, request: Request, context: ContextDep) -> Response:
    form = await _public_form(context, form_id)
    # Every answer, errors included, carries the form's CORS headers, so the page's script can read it.
    cors_headers = cors.response_headers(request.headers.get("origin"), form.allowed_origins)
    try:
        response = await _submit(form, request, context)
    except ServiceError as exc:  # a browser post's RateLimit fields (and Retry-After on 429) ride on errors too
        exc.headers.update({**getattr(request.state, "rate_limit_headers", {}), **cors_headers})
        raise
    response.headers.update({**getattr(request.state, "rate_limit_headers", {}), **cors_headers})
    return response


@intake_router.options("/{form_id}/submissions", include_in_schema=False)
async def submission_preflight(form_id: str, request: Request, context: ContextDep) -> Response:
    """A browser's CORS preflight before a script posts JSON: allowed for the form's own origins only."""
    form = await _public_form(context, form_id)
    origin = request.headers.get("origin")
    headers = cors.preflight_headers(origin, form.allowed_origins)
    if origin is not None and "Access-Control-Allow-Origin" not in headers:
        raise Forbidden(f"the origin {origin[:200]!r} may not post to this form (see the form's allowed_origins)",
                        headers=headers)
    return Response(status_code=204, headers={**headers, "Allow": "POST, OPTIONS"})


async def _public_form(context: ServiceContext, form_id: str) -> Form:
    form: Form | None = await collaborators(context).form_cache.get(context, form_id)
    if form is None:
        raise NotFound(f"no form {form_id}")
    return form


async def _submit(form: Form, request: Request, context: ServiceContext) -> Response:
    settings = context.settings_as(Settings)
    raw = await _read_capped(request, settings.max_submission_bytes)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in ACCEPTED_TYPES:
        raise UnsupportedMediaType("send application/json or application/x-www-form-urlencoded")
    signature = request.headers.get("salesflow-signature")
    ip = client_ip(request, settings.trusted_proxies)
    if signature is not None:
        channel = "signed"
        try:
            # wall time, not the service's clock: the sender stamped the signature with its own real clock
            verify(signature, raw, [form.signing_secret], time.time(), settings.signature_tolerance_s)
        except SignatureError as exc:
            raise SignatureRejected(str(exc)) from None
    else:
        channel = "browser"
        origin = request.headers.get("origin")
        if form.allowed_origins and origin is not None and not cors.origin_allowed(origin, form.allowed_origins):
            raise Forbidden(f"the origin {origin[:200]!r} may not post to this form (see the form's "
                            "allowed_origins)")
    try:
        payload = parse_payload(raw, content_type)
    except PayloadError as exc:
        raise ValidationFailed.single("body", str(exc)) from None
    spam = False
    if channel == "browser":
        key = payload.get(PUBLIC_KEY_FIELD) or request.query_params.get("key")
        if not isinstance(key, str) or key != form.public_key:
            raise Unauthorized(f"a browser post needs the form's public key in the '{PUBLIC_KEY_FIELD}' field "
                               "(or a Salesflow-Signature header)")
        limiter = collaborators(context).rate_limiter
        quota = limiter.take(f"form:{form.id}", form.rate_limit_per_minute)
        if quota.allowed:  # the visitor's own bucket is spent only when the form's allowed the post
            per_visitor = limiter.take(f"ip:{form.id}:{ip}", settings.ip_rate_limit_per_minute)
            if not per_visitor.allowed or per_visitor.remaining < quota.remaining:
                quota = per_visitor  # the answer describes the bucket closest to refusing
        request.state.rate_limit_headers = quota.headers()
        if not quota.allowed:
            raise TooManyRequests(f"too many submissions; try again in {quota.retry_after_s} s")
        spam = bool(payload.get(form.honeypot_field))
    stamp = context.clock.now()
    submission_id = new_id()
    if spam:  # looks like success to the bot; stored, never turned into a lead, and reserves no submission id
        async with context.uow() as uow:
            await store_submission(uow, form, Received(submission_id, raw, content_type, channel, ip, None, stamp),
                                   SubmissionState("spam"))
            await uow.commit()
        return _browser_reply(request, form, {"submission_id": submission_id, "status": "received"}, 202)
    dedup_key = scoped_dedup_key(channel, request.headers.get("idempotency-key")
                                 or request.headers.get("salesflow-submission-id") or payload.get(SUBMISSION_ID_FIELD))
    received = Received(submission_id, raw, content_type, channel, ip, dedup_key, stamp)
    if dedup_key is not None:
        async with context.database.session() as session:
            earlier = await find_duplicate(session, form, dedup_key)
        if earlier is not None:  # a retry: the first response again (the unique key decides under races)
            return _replay(request, form, channel, earlier)
    try:
        state = await collaborators(context).intake_batcher.accept(form, payload, received)
        if state is not None:
            return _reply(request, form, channel, submission_id, state)
        async with context.database.session() as session:  # a concurrent duplicate won the key
            return _replay(request, form, channel, await find_duplicate(session, form, dedup_key))
    except Exception:
        log.exception("submission_processing_failed", submission_id=submission_id, form_id=form.id)
    # Processing failed unexpectedly: store the raw submission alone; the sweep (or a reprocess) finishes it.
    state = SubmissionState("received", [])
    try:
        async with context.uow() as uow:
            if not await store_submission(uow, form, received, state):
                return _replay(request, form, channel, await find_duplicate(uow.session, form, dedup_key))
            await uow.commit()
    except (DBAPIError, OSError) as exc:  # not stored, so not acknowledged: the sender must retry
        log.error("submission_not_stored", submission_id=submission_id, error=str(exc)[:300])
        raise ServiceUnavailable("the submission could not be stored; retry shortly",
                                 headers={"Retry-After": "5"}) from None
    return _reply(request, form, channel, submission_id, state)


def _reply(request: Request, form: Form, channel: str, submission_id: str, state: SubmissionState,
           replayed: bool = False) -> Response:
    body = state.answer(submission_id)
    status_code = {"created": 201, "updated": 200}.get(state.outcome or "", 202)
    if channel == "browser":
        return _browser_reply(request, form, body, status_code)
    response = JSONResponse(body, status_code=status_code)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _replay(request: Request, form: Form, channel: str, row: Submission | None) -> Response:
    assert row is not None, "a duplicate's first submission is stored"
    state = SubmissionState("received" if row.status == "spam" else row.status, row.errors or [], row.lead_id,
                            row.outcome)
    return _reply(request, form, channel, row.id, state, replayed=True)


# ------------------------------------------------------------------------------- submissions (admin)
@router.get("/{form_id}/submissions", summary="A form's stored submissions (filter status=failed to fix them)",
            operation_id="listSubmissions", **returns(R.SubmissionPage))
async def list_submissions(form_id: str, uow: UowDep, principal: AdminPrincipal, status: str | None = None,
                           limit: LimitParam = 50, cursor: CursorParam = None) -> dict[str, Any]:
    await _own_form(uow, form_id, principal.org_id)
    page = await form_repo.submissions_page(uow.session, principal.org_id, form_id, status=status, limit=limit,
                                            cursor=cursor)
    return page_body(page, submission_to_dict)


@router.get("/{form_id}/submissions/{submission_id}", summary="One stored submission with its errors",
            operation_id="getSubmission", **returns(R.SubmissionOut))
async def get_submission(form_id: str, submission_id: str, uow: UowDep, principal: AdminPrincipal) -> dict[str, Any]:
    submission = await form_repo.find_submission(uow.session, principal.org_id, submission_id, form_id=form_id)
    if submission is None:
        raise NotFound(f"no submission {submission_id}")
    return submission_to_dict(submission)


@router.post("/{form_id}/submissions/{submission_id}/reprocess", summary="Process a failed submission again",
             operation_id="reprocessSubmission", **returns(R.SubmissionResult))
async def reprocess_one(form_id: str, submission_id: str, uow: UowDep, context: ContextDep,
                        principal: AdminPrincipal, idem: IdempotencyDep) -> JSONResponse:
    async def act() -> dict[str, Any]:
        form = await _own_form(uow, form_id, principal.org_id)
        state = await reprocessing.reprocess_submission(uow, context, form, submission_id)
        return state.answer(submission_id)

    return await once(idem, uow, org_id=principal.org_id, scope=f"reprocess:{form_id}:{submission_id}",
                      payload=None, act=act)


@router.post("/{form_id}/submissions/reprocess", summary="Process every failed submission of the form again",
             operation_id="reprocessFailedSubmissions", **returns(R.ReprocessResult))
async def reprocess_failed(form_id: str, uow: UowDep, context: ContextDep, principal: AdminPrincipal,
                           idem: IdempotencyDep, limit: LimitParam = 500) -> JSONResponse:
    form = await _own_form(uow, form_id, principal.org_id)
    ids = await reprocessing.unfinished_submissions(uow, form, limit)

    async def act() -> dict[str, Any]:
        results = [r.state.answer(r.submission_id) for r in await reprocessing.reprocess_all(context, form, ids)]
        return {"reprocessed": len(results), "accepted": sum(r["status"] == "accepted" for r in results),
                "failed": sum(r["status"] == "failed" for r in results), "items": results}

    return await once_across(idem, context.uow, org_id=principal.org_id, scope=f"reprocess-failed:{form_id}",
                             payload={"limit": limit}, act=act)
