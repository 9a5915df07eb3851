"""Web-form intake: every submission that passes the signature / public-key check is stored raw.

The raw row and the lead it becomes are written in one transaction, raw row included whatever the outcome:
a mapping or validation failure stores it "failed" with field-named errors (fix the form, reprocess it);
an unexpected processing error rolls the lead back and stores the raw row alone as "received", which the
sweep processes later. No submission is acknowledged (2xx) before its raw row is committed.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import forms as form_repo
from ..adapters.repository.forms import Submission
from ..domain.forms import Form
from ..domain.lead import LeadIn
from ..domain.mapping import FieldProblem, map_payload
from ..domain.times import iso
from .ingest import Candidate, OrgSetup, Outcome, ingest

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


@dataclass(frozen=True)
class Received:
    """A submission as it arrived (verified and parsed by the endpoint, nothing done with it yet)."""
    submission_id: str
    raw: bytes
    content_type: str
    channel: str  # signed, browser
    remote_ip: str | None
    dedup_key: str | None  # `scoped_dedup_key` of the id the sender sent
    now: datetime


@dataclass(frozen=True)
class SubmissionState:
    """What became of a submission: accepted (with its lead), failed (with field-named errors), received (stored
    raw, to be processed by the sweep) or spam (stored, never processed)."""
    status: str
    errors: list[dict[str, str]] | None = None
    lead_id: str | None = None
    outcome: str | None = None  # created, updated

    @classmethod
    def failed(cls, problems: Sequence[FieldProblem]) -> SubmissionState:
        return cls("failed", [{"field": p.field, "message": p.message} for p in problems])

    @classmethod
    def accepted(cls, outcome: Outcome) -> SubmissionState:
        return cls("accepted", [], outcome.lead.id, "created" if outcome.created else "updated")

    def answer(self, submission_id: str) -> dict[str, Any]:
        """The API's answer about the submission (SubmissionResult)."""
        return {"submission_id": submission_id, "status": self.status, "errors": self.errors,
                "lead_id": self.lead_id, "outcome": self.outcome}


def submission_values(form: Form, received: Received, state: SubmissionState) -> Submission:
    """The stored submission of one received, in `state`."""
    done = state.status not in ("received", "spam")
    now = received.now
    return Submission(id=received.submission_id, org_id=form.org_id, form_id=form.id, received_at=now,
                      channel=received.channel, content_type=received.content_type[:100],
                      raw_body=received.raw.decode("utf-8", errors="replace"), remote_ip=received.remote_ip,
                      dedup_key=received.dedup_key, status=state.status, errors=state.errors,
                      lead_id=state.lead_id, outcome=state.outcome, attempts=1 if done else 0,
                      processed_at=now if done else None)


async def store_submission(uow: UnitOfWork, form: Form, received: Received, state: SubmissionState) -> bool:
    """Insert the raw submission with its state; False when the de-duplication key was already used."""
    return await form_repo.insert_submission(uow.session, submission_values(form, received, state))


async def find_duplicate(session: AsyncSession, form: Form, dedup_key: str | None) -> Submission | None:
    if dedup_key is None:
        return None
    return await form_repo.submission_by_key(session, form.org_id, form.id, dedup_key)


async def _ingested(uow: UnitOfWork, form: Form, setup: OrgSetup, submission_id: str, lead: LeadIn,
                    now: datetime) -> SubmissionState:
    [outcome] = await ingest(uow, form.org_id, [Candidate(lead, origin="form", form_id=form.id,
                                                          submission_id=submission_id)], setup, now)
    return SubmissionState.accepted(outcome)


async def accept_submission(uow: UnitOfWork, form: Form, setup: OrgSetup, received: Received,
                            payload: dict[str, Any]) -> SubmissionState | None:
    """Map and ingest a new submission and store it raw, all in one transaction (the caller commits).

    The raw row is written whatever the outcome: failed (with field-named errors) when mapping fails,
    accepted with its lead otherwise. Returns None when the de-duplication key was already used (roll back).
    """
    result = map_payload(payload, form.spec, setup.custom_defs)
    if result.lead is None:
        state = SubmissionState.failed(result.errors)
    else:
        state = await _ingested(uow, form, setup, received.submission_id, result.lead, received.now)
    stored = await store_submission(uow, form, received, state)
    return state if stored else None


async def process_submission(uow: UnitOfWork, form: Form, submission_id: str, setup: OrgSetup, now: datetime,
                             payload: dict[str, Any] | None = None) -> SubmissionState:
    """Map and ingest one stored submission inside `uow` (the caller commits). Returns its new state."""
    if payload is None:
        row = await form_repo.find_submission(uow.session, form.org_id, submission_id, for_update=True)
        assert row is not None, "a stored submission is reprocessed"
        if row.status == "accepted":
            return SubmissionState("accepted", [], row.lead_id, row.outcome)
        try:
            payload = parse_payload(row.raw_body.encode(), row.content_type)
        except PayloadError as exc:
            payload = None
            state = SubmissionState.failed([FieldProblem("body", str(exc))])
    if payload is not None:
        result = map_payload(payload, form.spec, setup.custom_defs)
        state = SubmissionState.failed(result.errors) if result.lead is None else \
            await _ingested(uow, form, setup, submission_id, result.lead, now)
    await form_repo.record_processing(uow.session, form.org_id, submission_id, status=state.status,
                                      errors=state.errors or [], lead_id=state.lead_id, outcome=state.outcome,
                                      now=now)
    return state
