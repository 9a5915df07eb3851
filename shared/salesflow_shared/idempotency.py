"""`Idempotency-Key` on POST: same key + same body → the same response and no second effect;
same key + another body → 409 (docs/architecture.md, HTTP conventions).

A key belongs to its caller: the organization and the token's subject. Another user of the same org sending
the same key and body makes a request of their own (never gets the first caller's stored response). The key
column holds a digest of (subject, key), so the stored form has a fixed length whatever the two are.

The key row is inserted (ON CONFLICT DO NOTHING) in the request's own transaction before any work, and the
response is stored in it before commit. A concurrent request with the same key waits on the unique index
until the first commits, then finds the stored response: the unique constraint, not a prior read, decides.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .clock import as_aware
from .db import rows_affected
from .errors import Conflict, Gone, ValidationFailed
from .events import utcnow
from .inbox import dialect_insert
from .infra_tables import idempotency_table as table

log = structlog.get_logger(__name__)
MAX_KEY_LENGTH = 255
# Work that outlives its request (`once_across`) keeps its claim alive: while it runs, the claim's `created_at`
# is moved forward every CLAIM_HEARTBEAT. A claim not moved for CLAIM_STALE_AFTER belongs to a process that
# died mid-work; a retry with the same key takes it over and acts, instead of answering 409 forever.
CLAIM_HEARTBEAT = timedelta(seconds=10)
CLAIM_STALE_AFTER = timedelta(seconds=60)
# What an erasure leaves of a stored response that returned the erased person (see forget_responses_about).
ERASED_RESPONSE = {"erased": True}


def caller_key(subject: str, key: str) -> str:
    """The stored key: the client's key scoped to the calling subject (the org is a column of its own)."""
    return hashlib.sha256(f"{subject}\n{key}".encode()).hexdigest()


class IdempotentRequest:
    def __init__(self, key: str | None, method: str, path: str, request: Request | None = None) -> None:
        self.client_key = key
        self.key: str | None = None
        self.method = method
        self.path = path
        self._request = request
        self._scope: str | None = None
        self._org_id: str | None = None

    def _subject(self) -> str:
        # Authentication has run by the time the endpoint calls begin(); public endpoints have no subject.
        principal = getattr(self._request.state, "principal", None) if self._request is not None else None
        return principal.user_id if principal is not None else ""

    async def begin(self, session: AsyncSession, *, org_id: str, scope: str, payload: Any) -> JSONResponse | None:
        """Return the stored response of an earlier identical request, or None to go ahead."""
        if not self.client_key:
            return None
        self.key = caller_key(self._subject(), self.client_key)
        fingerprint = hashlib.sha256(json.dumps([self.method, self.path, payload], sort_keys=True,
                                                default=str).encode()).hexdigest()
        insert = dialect_insert(session)
        result = await session.execute(insert(table).values(
            org_id=org_id, scope=scope, key=self.key, fingerprint=fingerprint, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["org_id", "scope", "key"]))
        self._scope, self._org_id = scope, org_id
        if rows_affected(result) == 1:
            return None
        row = (await session.execute(select(table).where(
            table.c.org_id == org_id, table.c.scope == scope, table.c.key == self.key))).one()
        if row.fingerprint != fingerprint:
            raise Conflict("Idempotency-Key was already used with a different request body")
        if row.status_code is None:
            if await self._take_over_stale_claim(session, org_id, scope, row.created_at):
                return None
            raise Conflict("a request with this Idempotency-Key is still in progress")
        if row.response_body == ERASED_RESPONSE:
            # The first request had its effect; what it answered held personal data since erased (GDPR).
            raise Gone("the response to this Idempotency-Key was erased with the personal data it held; the "
                       "request had its effect and is not repeated")
        headers = dict(row.response_headers or {})
        headers["Idempotent-Replayed"] = "true"
        return JSONResponse(row.response_body, status_code=row.status_code, headers=headers)

    async def _take_over_stale_claim(self, session: AsyncSession, org_id: str, scope: str,
                                     claimed_at: datetime) -> bool:
        """An unanswered claim whose heartbeat stopped: its process died mid-work. Move it to this request,
        compare-and-set on the heartbeat read, so of two retries racing for it exactly one wins."""
        if utcnow() - as_aware(claimed_at) < CLAIM_STALE_AFTER:
            return False
        result = await session.execute(update(table).where(
            table.c.org_id == org_id, table.c.scope == scope, table.c.key == self.key,
            table.c.status_code.is_(None), table.c.created_at == claimed_at).values(created_at=utcnow()))
        if rows_affected(result) != 1:
            return False
        self._scope, self._org_id = scope, org_id
        return True

    async def heartbeat(self, session: AsyncSession) -> None:
        """Show that the claimed key's work is still running (see CLAIM_STALE_AFTER)."""
        if self.key and self._scope is not None:
            await session.execute(update(table).where(
                table.c.org_id == self._org_id, table.c.scope == self._scope, table.c.key == self.key,
                table.c.status_code.is_(None)).values(created_at=utcnow()))

    async def complete(self, session: AsyncSession, *, status_code: int, body: Any,
                       headers: dict[str, str] | None = None) -> JSONResponse:
        """Store the response (in the open transaction) and return it."""
        if self.key and self._scope is not None:
            await session.execute(update(table).where(
                table.c.org_id == self._org_id, table.c.scope == self._scope, table.c.key == self.key,
            ).values(status_code=status_code, response_body=body, response_headers=headers or {}))
        return JSONResponse(body, status_code=status_code, headers=headers)


    async def release(self, session: AsyncSession) -> None:
        """Give up a claimed key whose work failed (its answer was never stored), so a retry acts."""
        if self.key and self._scope is not None:
            await session.execute(sa.delete(table).where(
                table.c.org_id == self._org_id, table.c.scope == self._scope, table.c.key == self.key,
                table.c.status_code.is_(None)))


async def forget_responses_about(session: AsyncSession, org_id: str, subject_ids: Sequence[str]) -> int:
    """For an erasure: the stored responses that returned these subjects (a created lead, a logged activity)
    carry personal data. Their bodies are replaced by `{"erased": true}`; the key row stays, so a retry of the
    same request still has no second effect. Returns how many were scrubbed."""
    scrubbed = 0
    body = sa.cast(table.c.response_body, sa.Text)
    for subject_id in subject_ids:
        escaped = subject_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        result = await session.execute(update(table).where(
            table.c.org_id == org_id, table.c.response_body.is_not(None),
            body.like(f'%"{escaped}"%', escape="\\")).values(response_body=ERASED_RESPONSE))
        scrubbed += rows_affected(result)
    return scrubbed


# `sent_key` is annotated `str` with a None default (the type: ignore below): `str | None` would publish the
# header as nullable in the OpenAPI document.
async def idempotency_key(request: Request, sent_key: Annotated[str, Header(
        alias="Idempotency-Key", description="Send the same key again (e.g. after a timeout) to get the first "
                                             "answer back with no second effect; another body with it is a 409",
        json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": r"\S"},
    )] = None) -> IdempotentRequest:  # type: ignore[assignment]
    key = sent_key
    if key is not None:
        key = key.strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed.single("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    return IdempotentRequest(key, request.method, request.url.path, request)


IdempotencyDep = Annotated[IdempotentRequest, Depends(idempotency_key)]


@dataclass(frozen=True)
class Answer:
    """What `act` answers when its status depends on what it did (201 created or 200 updated, a 409 that is
    stored like any answer), with that answer's headers. `body` is JSON as built (dicts, lists, strings,
    numbers, booleans, None): it is stored and answered as it is, not walked again by FastAPI's encoder."""
    body: Any
    status_code: int
    headers: dict[str, str] | None = None


async def once(idem: IdempotentRequest, uow: Any, *, org_id: str, scope: str, payload: Any,
               act: Callable[[], Awaitable[Any]], status_code: int = 200,
               headers: Callable[[Any], dict[str, str]] | None = None) -> JSONResponse:
    """Run `act` at most once per Idempotency-Key: a retry gets the stored answer, another body with the key 409.

    `act` makes its change in `uow` without committing and returns the answer's JSON body (or an `Answer`
    naming its own status and headers); `headers` builds the answer's headers (an ETag) from the body. The key,
    the change and the stored answer commit together, so a crash between them leaves neither (the retry then
    acts, once)."""
    if (replay := await idem.begin(uow.session, org_id=org_id, scope=scope, payload=payload)):
        return replay
    result = await act()
    if isinstance(result, Answer):
        body, status_code, answer_headers = result.body, result.status_code, result.headers
    else:
        body = jsonable_encoder(result)
        answer_headers = headers(body) if headers is not None else None
    response = await idem.complete(uow.session, status_code=status_code, body=body, headers=answer_headers)
    await uow.commit()
    return response


async def once_across(idem: IdempotentRequest, open_uow: Callable[[], Any], *, org_id: str, scope: str,
                      payload: Any, act: Callable[[], Awaitable[Any]], status_code: int = 200) -> JSONResponse:
    """`once` for work that commits in transactions of its own (batches, per-item commits).

    The key is claimed and committed first, so a retry while the work runs gets 409 ("still in progress") rather
    than a second run; the answer is stored when the work is done. Work that fails releases the claim, so a
    retry acts. A process that dies mid-work stops the claim's heartbeat: once it is CLAIM_STALE_AFTER old, a
    retry with the same key takes the claim over and runs the work again (each batch the dead run committed
    stands, and the work is written to be safe to run again: rescoring, reprocessing)."""
    async with open_uow() as uow:
        if (replay := await idem.begin(uow.session, org_id=org_id, scope=scope, payload=payload)):
            return replay
        await uow.commit()
    try:
        async with _heartbeats(idem, open_uow):
            body = jsonable_encoder(await act())
    except BaseException:
        async with open_uow() as uow:
            await idem.release(uow.session)
            await uow.commit()
        raise
    async with open_uow() as uow:
        response = await idem.complete(uow.session, status_code=status_code, body=body)
        await uow.commit()
    return response


@contextlib.asynccontextmanager
async def _heartbeats(idem: IdempotentRequest, open_uow: Callable[[], Any]) -> AsyncIterator[None]:
    """Keep the claim alive while the body runs (each beat its own short transaction)."""
    async def beat() -> None:
        while True:
            await asyncio.sleep(CLAIM_HEARTBEAT.total_seconds())
            try:
                async with open_uow() as uow:
                    await idem.heartbeat(uow.session)
                    await uow.commit()
            except Exception:  # noqa: BLE001 - one missed beat (a database blip) must not end the others
                log.warning("idempotency_claim_heartbeat_failed", exc_info=True)

    if not idem.key:
        yield
        return
    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
