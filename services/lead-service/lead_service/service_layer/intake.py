"""Web-form intake: every submission that passes the signature / public-key check is stored raw.

The raw row and the lead it becomes are written in one transaction, raw row included whatever the outcome:
a mapping or validation failure stores it "failed" with field-named errors (fix the form, reprocess it);
an unexpected processing error rolls the lead back and stores the raw row alone as "received", which the
sweep processes later. No submission is acknowledged (2xx) before its raw row is committed.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import forms as form_repo
from ..adapters.repository.forms import Submission
from ..domain.forms import Form
from ..domain.mapping import map_payload
from .ingest import Candidate, OrgSetup, ingest
from .views import iso

log = structlog.get_logger(__name__)


class PayloadError(ValueError):
    pass


def new_public_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


def new_signing_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def parse_payload(raw: bytes, content_type: str) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError("the body is not UTF-8") from None
    if kind == "application/json":
        try:
            payload = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise PayloadError(f"the body is not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(payload, dict):
            raise PayloadError("the JSON body must be an object of field names to values")
        return payload
    if kind == "application/x-www-form-urlencoded":
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=500)
        return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}
    raise PayloadError(f"unsupported content type {kind!r}")


def submission_to_dict(submission: Submission) -> dict[str, Any]:
    s = submission
    return {"id": s.id, "form_id": s.form_id, "status": s.status, "channel": s.channel,
            "received_at": iso(s.received_at), "processed_at": iso(s.processed_at),
            "errors": s.errors or [], "lead_id": s.lead_id, "outcome": s.outcome,
            "attempts": s.attempts, "content_type": s.content_type, "raw_body": s.raw_body,
            "dedup_key": sender_submission_id(s.dedup_key)}


# A sender's submission id is unique per form *and channel*: the public key of a browser form is in the page,
# so a browser post must never reserve an id the provider's signed webhook will use (nor the reverse).
DEDUP_CHANNELS = ("browser", "signed")
_DEDUP_KEY_LENGTH = 255


def scoped_dedup_key(channel: str, submission_id: object) -> str | None:
    """The stored de-duplication key of a submission id sent on `channel` (None when none was sent)."""
    text = "" if submission_id is None else str(submission_id).strip()
    if not text:
        return None
    prefix = f"{channel}:"
    return prefix + text[:_DEDUP_KEY_LENGTH - len(prefix)]


def sender_submission_id(dedup_key: str | None) -> str | None:
    """The id the sender sent, as stored by `scoped_dedup_key`."""
    if dedup_key is None:
        return None
    channel, _, sent = dedup_key.partition(":")
    return sent if channel in DEDUP_CHANNELS else dedup_key


def submission_values(form: Form, *, submission_id: str, raw: bytes, content_type: str, channel: str,
                      remote_ip: str | None, dedup_key: str | None, now: datetime,
                      state: dict[str, Any]) -> dict[str, Any]:
    done = state["status"] not in ("received", "spam")
    return dict(id=submission_id, org_id=form.org_id, form_id=form.id, received_at=now, channel=channel,
                content_type=content_type[:100], raw_body=raw.decode("utf-8", errors="replace"),
                remote_ip=remote_ip, dedup_key=dedup_key, status=state["status"], errors=state.get("errors"),
                lead_id=state.get("lead_id"), outcome=state.get("outcome"), attempts=1 if done else 0,
                processed_at=now if done else None)


async def store_submission(uow: UnitOfWork, form: Form, *, submission_id: str, raw: bytes, content_type: str,
                           channel: str, remote_ip: str | None, dedup_key: str | None, now: datetime,
                           state: dict[str, Any]) -> bool:
    """Insert the raw submission with its state; False when the de-duplication key was already used."""
    return await form_repo.insert_submission(uow.session, submission_values(
        form, submission_id=submission_id, raw=raw, content_type=content_type, channel=channel,
        remote_ip=remote_ip, dedup_key=dedup_key, now=now, state=state))


async def find_duplicate(session: AsyncSession, form: Form, dedup_key: str | None) -> Submission | None:
    if dedup_key is None:
        return None
    return await form_repo.submission_by_key(session, form.org_id, form.id, dedup_key)


async def accept_submission(uow: UnitOfWork, form: Form, setup: OrgSetup, *, submission_id: str, raw: bytes,
                            content_type: str, channel: str, remote_ip: str | None, dedup_key: str | None,
                            payload: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """Map and ingest a new submission and store it raw, all in one transaction (the caller commits).

    The raw row is written whatever the outcome: failed (with field-named errors) when mapping fails,
    accepted with its lead otherwise. Returns None when the de-duplication key was already used (roll back).
    """
    result = map_payload(payload, form.spec, setup.custom_defs)
    if result.lead is None:
        state: dict[str, Any] = {"status": "failed", "lead_id": None, "outcome": None,
                                 "errors": [{"field": p.field, "message": p.message} for p in result.errors]}
    else:
        [outcome] = await ingest(uow, form.org_id, [Candidate(result.lead, origin="form", form_id=form.id,
                                                              submission_id=submission_id)], setup, now)
        state = {"status": "accepted", "errors": [], "lead_id": outcome.lead["id"],
                 "outcome": "created" if outcome.created else "updated"}
    stored = await store_submission(uow, form, submission_id=submission_id, raw=raw, content_type=content_type,
                                    channel=channel, remote_ip=remote_ip, dedup_key=dedup_key, now=now, state=state)
    return state if stored else None


async def process_submission(uow: UnitOfWork, form: Form, submission_id: str, setup: OrgSetup, now: datetime,
                             payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Map and ingest one stored submission inside `uow` (the caller commits). Returns its new state."""
    if payload is None:
        row = await form_repo.find_submission(uow.session, form.org_id, submission_id, for_update=True)
        assert row is not None, "a stored submission is reprocessed"
        if row.status == "accepted":
            return {"status": "accepted", "lead_id": row.lead_id, "outcome": row.outcome, "errors": []}
        try:
            payload = parse_payload(row.raw_body.encode(), row.content_type)
        except PayloadError as exc:
            payload = None
            errors = [{"field": "body", "message": str(exc)}]
    if payload is not None:
        result = map_payload(payload, form.spec, setup.custom_defs)
        errors = [{"field": p.field, "message": p.message} for p in result.errors]
    state: dict[str, Any]
    if payload is None or result.lead is None:
        state = {"status": "failed", "errors": errors, "lead_id": None, "outcome": None}
    else:
        [outcome] = await ingest(uow, form.org_id, [Candidate(result.lead, origin="form", form_id=form.id,
                                                              submission_id=submission_id)], setup, now)
        state = {"status": "accepted", "errors": [], "lead_id": outcome.lead["id"],
                 "outcome": "created" if outcome.created else "updated"}
    await form_repo.record_processing(uow.session, form.org_id, submission_id, status=state["status"],
                                      errors=state["errors"], lead_id=state["lead_id"], outcome=state["outcome"],
                                      now=now)
    return state
