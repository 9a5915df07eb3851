"""One error hierarchy, mapped once to RFC 9457 problem+json.

Services raise these from their service layer; the handlers installed by `install_error_handlers`
turn them (and FastAPI's own validation and HTTP errors) into `application/problem+json` responses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .db import is_database_outage, is_transaction_conflict

PROBLEM_CONTENT_TYPE = "application/problem+json"
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ServiceError(Exception):
    """Base of every error a service raises on purpose; carries its HTTP status."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []
        self.headers = headers or {}

    @property
    def type_uri(self) -> str:
        return f"urn:salesflow:problem:{self.slug}"


class BadRequest(ServiceError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(ServiceError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "Not allowed for this role"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(ServiceError):
    status, slug, title = 410, "gone", "Gone"


class PreconditionFailed(ServiceError):
    status, slug, title = 412, "precondition-failed", "The resource changed since you read it"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(ServiceError):
    status, slug, title = 422, "validation-failed", "The request is not valid"

    @classmethod
    def single(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", errors=[FieldError(field, message)])


class PreconditionRequired(ServiceError):
    status, slug, title = 428, "precondition-required", "If-Match header required"


class TooManyRequests(ServiceError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(ServiceError):
    status, slug, title = 503, "unavailable", "Service unavailable"


def problem_response(status: int, title: str, detail: str, *, type_uri: str = "about:blank",
                     instance: str | None = None, errors: list[FieldError] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": type_uri, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    # FastAPI locations look like ("body", "contact", "email") or ("query", "limit"); the first part
    # says where, the rest is the field a client recognises.
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def validation_errors_from_pydantic(errors: list[dict[str, Any]]) -> list[FieldError]:
    return [FieldError(_field_path(tuple(e.get("loc", ()))), str(e.get("msg", "invalid"))) for e in errors]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, type_uri=exc.type_uri,
                                instance=request.url.path, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors_from_pydantic(list(exc.errors()))
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "invalid request"
        return problem_response(422, ValidationFailed.title, detail,
                                type_uri=ValidationFailed("x").type_uri, instance=request.url.path,
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8 JSON)
            error = ValidationFailed.single("body", "not a JSON document (UTF-8) this operation takes")
            return problem_response(error.status, error.title, error.detail, type_uri=error.type_uri,
                                    instance=request.url.path, errors=error.errors)
        titles = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}
        return problem_response(exc.status_code, titles.get(exc.status_code, "HTTP error"), str(exc.detail),
                                instance=request.url.path, headers=getattr(exc, "headers", None))

    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_database_outage(exc):
            # Nothing was accepted (the transaction never committed): the client may retry, with the same
            # Idempotency-Key, once the database is back.
            log.warning("database_unavailable", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
            return problem_response(503, "Service unavailable", "The database is unreachable; retry later.",
                                    instance=request.url.path, headers={"Retry-After": "2"})
        if is_transaction_conflict(exc):
            # The database rolled the request's transaction back to settle a conflict with concurrent work (a
            # deadlock): nothing was kept, and the same request (same Idempotency-Key) goes through when retried.
            log.info("transaction_conflict", path=request.url.path, error=f"{type(exc).__name__}: {exc}"[:300])
            return problem_response(503, "Service unavailable",
                                    "The request conflicted with concurrent changes and nothing of it was saved; "
                                    "retry.", instance=request.url.path, headers={"Retry-After": "1"})
        return _internal_error(request)

    # Registered by class (not only under Exception, whose handler Starlette re-raises after answering) so an
    # outage is an ordinary answer, not an application crash.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(ConnectionError, _database_error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(request)


def _internal_error(request: Request) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path)
    return problem_response(500, "Internal error", "An unexpected error occurred.", instance=request.url.path)


# The problem+json body as a JSON Schema: the one `Problem` component every operation's errors refer to
# (contract.py).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
