"""ASGI middleware every service installs: correlation id, a cap on request body size and on JSON shape, ETags
and If-None-Match on reads."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PROBLEM_CONTENT_TYPE, FieldError, PayloadTooLarge, ValidationFailed, problem_response
from .guards import json_shape_problem
from .logging import correlation_id_var, traceparent_var

CORRELATION_HEADER = b"x-correlation-id"
MAX_CORRELATION_ID_LENGTH = 100  # as the X-Correlation-ID parameter declares (contract.py)


class CorrelationMiddleware:
    """Take `X-Correlation-ID` (or make one), bind it for logs and events, and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(CORRELATION_HEADER, b"").decode("latin-1").strip()
        if len(raw) > MAX_CORRELATION_ID_LENGTH:
            # Refused rather than cut: an id echoed back (and carried by events) other than the one sent would
            # not find the caller's own records.
            error = ValidationFailed.single("X-Correlation-ID",
                                            f"must be at most {MAX_CORRELATION_ID_LENGTH} characters")
            response = problem_response(error.status, error.title, error.detail, type_uri=error.type_uri,
                                        instance=scope.get("path"), errors=error.errors)
            await response(scope, receive, send)
            return
        correlation_id = raw or str(uuid.uuid4())
        traceparent = headers.get(b"traceparent", b"").decode("latin-1") or None
        tokens = (correlation_id_var.set(correlation_id), traceparent_var.set(traceparent))

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(CORRELATION_HEADER, correlation_id.encode())]
            await send(message)

        try:
            with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
                await self.app(scope, receive, send_with_header)
        finally:
            correlation_id_var.reset(tokens[0])
            traceparent_var.reset(tokens[1])


class BodySizeLimitMiddleware:
    """Refuse bodies above `max_bytes` with 413 problem+json, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise PayloadTooLarge(f"the request body exceeds {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge:
            if not response_started:
                await _send_413(send, self.max_bytes)
        except Exception:
            if too_large and not response_started:
                await _send_413(send, self.max_bytes)
            else:
                raise


async def _send_413(send: Send, max_bytes: int) -> None:
    import json

    body = json.dumps({"type": "urn:salesflow:problem:payload-too-large", "title": "Payload too large",
                       "status": 413, "detail": f"the request body exceeds {max_bytes} bytes"}).encode()
    headers: list[Any] = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                          (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class JsonLimitsMiddleware:
    """Refuse JSON bodies nested deeper than `max_depth` or holding more than `max_items` values with 422
    problem+json naming the limit, before routing, authentication or parsing (every service, every route).

    Runs inside BodySizeLimitMiddleware, so the body it buffers is already capped.
    """

    def __init__(self, app: ASGIApp, max_depth: int, max_items: int) -> None:
        self.app = app
        self.max_depth = max_depth
        self.max_items = max_items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1").lower()
        if "json" not in content_type:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_shape_problem(body, self.max_depth, self.max_items)
        if problem is not None:
            error = ValidationFailed(problem, errors=[FieldError("body", problem)])
            response = problem_response(error.status, error.title, error.detail, type_uri=error.type_uri,
                                        instance=scope.get("path"), errors=error.errors)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that hands out `messages` first, then whatever the server sends next (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()
    return replayed


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match compares weakly (RFC 9110 13.1.2): `W/"x"` and `"x"` are the same validator here."""
    def opaque(tag: str) -> str:
        return tag.strip().removeprefix("W/")

    tags = [tag for tag in (t.strip() for t in if_none_match.split(",")) if tag]
    return "*" in tags or opaque(etag) in {opaque(tag) for tag in tags}


class ConditionalGetMiddleware:
    """Every API read (`GET /v1/...`) answered in one piece carries a strong ETag, and If-None-Match holding it
    gets 304 with no body (docs/architecture.md, HTTP conventions).

    A route that knows its version sets the ETag itself (`"<version>"`); for any other answer (a report, a
    list, a computed view) the ETag is a digest of the exact bytes sent, so it changes exactly when the answer
    does. The work of building the answer is done either way; the 304 saves sending and parsing it. "In one
    piece" means its length is known up front (Content-Length): streamed answers (CSV exports, server-sent
    events) pass through untouched, never buffered.
    """

    CONDITIONAL_TYPES = (b"application/json", b"text/csv")
    MAX_BYTES = 16 * 1024 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if_none_match = dict(scope.get("headers") or []).get(b"if-none-match", b"").decode("latin-1")
        start: Message | None = None
        chunks: list[bytes] = []
        passing_through = False

        async def conditional_send(message: Message) -> None:
            nonlocal start, passing_through
            if passing_through:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = {name.lower(): value for name, value in message.get("headers") or []}
                media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
                length = headers.get(b"content-length", b"")
                if message["status"] != 200 or media_type not in self.CONDITIONAL_TYPES or \
                        not length.isdigit() or int(length) > self.MAX_BYTES:
                    passing_through = True
                    await send(message)
                else:
                    start = message  # held until the whole body is here
                return
            assert start is not None
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            response_headers = list(start.get("headers") or [])
            etag = next((value.decode("latin-1") for name, value in response_headers if name.lower() == b"etag"), None)
            if etag is None:
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                response_headers.append((b"etag", etag.encode()))
            if if_none_match and _etag_matches(if_none_match, etag):
                kept = [(n, v) for n, v in response_headers if n.lower() not in (b"content-length", b"content-type")]
                await send({"type": "http.response.start", "status": 304, "headers": kept})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({**start, "headers": response_headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, conditional_send)
