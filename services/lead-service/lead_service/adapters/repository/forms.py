"""Web forms and their raw submissions, org-scoped (the public submission endpoint finds a form by its id
alone: the form is what tells the org)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from salesflow_shared.pagination import decode_cursor, encode_cursor

from ...domain.forms import Form
from ...domain.times import iso
from ..orm import forms, submissions
from . import INSERT_BY_DIALECT, Page, keyset

_FORM_FIELDS = tuple(Form.model_fields)


def _form(row: Any) -> Form:
    m = row._mapping
    return Form(**{k: m[k] for k in _FORM_FIELDS})


async def insert_form(session: AsyncSession, form: Form, now: datetime) -> None:
    await session.execute(sa.insert(forms).values(**form.model_dump(), created_at=now, updated_at=now))


_FORM_BY_ID = sa.select(forms).where(forms.c.id == sa.bindparam("form_id"))
_ORG_FORM_BY_ID = _FORM_BY_ID.where(forms.c.org_id == sa.bindparam("org_id"))


async def find_form(session: AsyncSession, form_id: str, org_id: str | None = None) -> Form | None:
    """The form; with `org_id`, only when it is that org's."""
    if org_id is None:
        row = (await session.execute(_FORM_BY_ID, {"form_id": form_id})).first()
    else:
        row = (await session.execute(_ORG_FORM_BY_ID, {"form_id": form_id, "org_id": org_id})).first()
    return _form(row) if row is not None else None


async def forms_page(session: AsyncSession, org_id: str, *, limit: int, cursor: str | None) -> Page[Form]:
    return await keyset(session, sa.select(forms).where(forms.c.org_id == org_id), [forms.c.created_at, forms.c.id],
                        limit, cursor, _form)


async def update_form(session: AsyncSession, org_id: str, form_id: str, *, version: int, now: datetime,
                      only_at_version: bool = True, **values: Any) -> None:
    """Change the form read at `version` to the next version (with `only_at_version`, a form changed
    meanwhile is left as it is)."""
    condition = [forms.c.id == form_id, forms.c.org_id == org_id]
    if only_at_version:
        condition.append(forms.c.version == version)
    await session.execute(sa.update(forms).where(*condition).values(**values, version=version + 1, updated_at=now))


# ------------------------------------------------------------------ submissions
@dataclass(frozen=True)
class Submission:
    id: str
    org_id: str
    form_id: str
    received_at: datetime
    channel: str  # signed, browser
    content_type: str
    raw_body: str
    remote_ip: str | None
    dedup_key: str | None  # the sender's submission id, scoped to its channel
    status: str  # received, accepted, failed, spam
    errors: list[dict[str, str]] | None
    lead_id: str | None
    outcome: str | None  # created, updated
    attempts: int
    processed_at: datetime | None


_SUBMISSION_FIELDS = tuple(Submission.__dataclass_fields__)


def _submission(row: Any) -> Submission:
    m = row._mapping
    return Submission(**{k: m[k] for k in _SUBMISSION_FIELDS})


_INSERT_SUBMISSION = sa.insert(submissions)


_INSERT_UNLESS_DUPLICATE = {dialect: insert(submissions).on_conflict_do_nothing(
    index_elements=["org_id", "form_id", "dedup_key"]) for dialect, insert in INSERT_BY_DIALECT.items()}


def _submission_columns(submission: Submission) -> dict[str, Any]:
    return {k: getattr(submission, k) for k in _SUBMISSION_FIELDS}


async def insert_submissions(session: AsyncSession, new: list[Submission]) -> None:
    """Store raw submissions that carry no de-duplication key."""
    await (await session.connection()).execute(_INSERT_SUBMISSION, [_submission_columns(s) for s in new])


async def insert_submission(session: AsyncSession, submission: Submission) -> bool:
    """Store a raw submission; False when its de-duplication key was already used."""
    connection = await session.connection()
    row = _submission_columns(submission)
    if submission.dedup_key is None:
        await connection.execute(_INSERT_SUBMISSION, row)
        return True
    result = await connection.execute(_INSERT_UNLESS_DUPLICATE[connection.dialect.name], row)
    return bool(result.rowcount == 1)


_SUBMISSION_BY_KEY = sa.select(submissions).where(
    submissions.c.org_id == sa.bindparam("org_id"), submissions.c.form_id == sa.bindparam("form_id"),
    submissions.c.dedup_key == sa.bindparam("dedup_key"))


async def submission_by_key(session: AsyncSession, org_id: str, form_id: str, dedup_key: str) -> Submission | None:
    row = (await session.execute(_SUBMISSION_BY_KEY, {"org_id": org_id, "form_id": form_id,
                                                      "dedup_key": dedup_key})).first()
    return _submission(row) if row is not None else None


async def find_submission(session: AsyncSession, org_id: str, submission_id: str, *, form_id: str | None = None,
                          for_update: bool = False) -> Submission | None:
    query = sa.select(submissions).where(submissions.c.id == submission_id, submissions.c.org_id == org_id)
    if form_id is not None:
        query = query.where(submissions.c.form_id == form_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return _submission(row) if row is not None else None


async def submissions_page(session: AsyncSession, org_id: str, form_id: str, *, status: str | None, limit: int,
                           cursor: str | None) -> Page[Submission]:
    """The form's submissions, oldest first."""
    query = sa.select(submissions).where(submissions.c.org_id == org_id, submissions.c.form_id == form_id)
    if status:
        query = query.where(submissions.c.status == status)
    values = decode_cursor(cursor, 2)
    if values is not None:
        at = datetime.fromisoformat(str(values[0]).replace("Z", "+00:00"))
        query = query.where(sa.or_(submissions.c.received_at > at,
                                   sa.and_(submissions.c.received_at == at, submissions.c.id > str(values[1]))))
    rows = (await session.execute(query.order_by(submissions.c.received_at, submissions.c.id)
                                  .limit(limit + 1))).all()
    items = [_submission(r) for r in rows[:limit]]
    next_cursor = encode_cursor([iso(items[-1].received_at), items[-1].id]) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)


async def unfinished_submission_ids(session: AsyncSession, org_id: str, form_id: str, limit: int) -> list[str]:
    """The form's submissions that failed or were never processed, oldest first."""
    return list((await session.execute(sa.select(submissions.c.id).where(
        submissions.c.org_id == org_id, submissions.c.form_id == form_id,
        submissions.c.status.in_(("failed", "received"))).order_by(submissions.c.received_at)
        .limit(limit))).scalars().all())


async def record_processing(session: AsyncSession, org_id: str, submission_id: str, *, status: str,
                            errors: list[dict[str, str]], lead_id: str | None, outcome: str | None,
                            now: datetime) -> None:
    """One more processing attempt of a stored submission, and what became of it."""
    await session.execute(sa.update(submissions).where(
        submissions.c.org_id == org_id, submissions.c.id == submission_id).values(
        status=status, errors=errors, lead_id=lead_id, outcome=outcome, attempts=submissions.c.attempts + 1,
        processed_at=now))


@dataclass(frozen=True)
class StuckSubmission:
    id: str
    org_id: str
    form_id: str


async def stuck_submissions(session: AsyncSession, now: datetime, older_than_s: float,
                            limit: int = 100) -> list[StuckSubmission]:
    """Submissions of every org left "received" longer than `older_than_s` (for the sweep)."""
    cutoff = now - timedelta(seconds=older_than_s)
    rows = (await session.execute(sa.select(submissions.c.id, submissions.c.org_id, submissions.c.form_id).where(
        submissions.c.status == "received", submissions.c.received_at < cutoff).limit(limit))).all()
    return [StuckSubmission(r.id, r.org_id, r.form_id) for r in rows]
