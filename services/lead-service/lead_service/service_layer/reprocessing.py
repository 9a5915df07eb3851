"""Processing stored web-form submissions again: one an admin picks, every failed one of a form, and the sweep
that finishes the submissions an unexpected processing error left "received".

Each submission is processed in a transaction of its own (`reprocess`), so one that fails again never takes
the others down; the admin's single reprocess runs in the request's transaction (its Idempotency-Key commits
with it).
"""
from __future__ import annotations

from dataclasses import dataclass

import structlog

from salesflow_shared.app import ServiceContext, run_periodically
from salesflow_shared.errors import NotFound, ValidationFailed
from salesflow_shared.uow import UnitOfWork

from ..adapters.repository import forms as form_repo
from ..collaborators import collaborators
from ..config import Settings
from ..domain.forms import Form
from .intake import SubmissionState, process_submission

log = structlog.get_logger(__name__)


async def reprocess_in(uow: UnitOfWork, context: ServiceContext, form: Form, submission_id: str) -> SubmissionState:
    """Process the stored submission in the caller's open transaction (not committed here)."""
    from ..entrypoints.common import org_setup

    setup = await org_setup(context, uow.session, form.org_id)
    return await process_submission(uow, form, submission_id, setup, uow.clock.now())


async def reprocess(context: ServiceContext, form: Form, submission_id: str) -> SubmissionState:
    """Process the stored submission in a transaction of its own, committed."""
    async with context.uow() as uow:
        state = await reprocess_in(uow, context, form, submission_id)
        await uow.commit()
    return state


async def reprocess_submission(uow: UnitOfWork, context: ServiceContext, form: Form,
                               submission_id: str) -> SubmissionState:
    """An admin's reprocess of one submission of the form (404 when the form has none by that id; a honeypot
    submission is never processed), in the caller's transaction."""
    row = await form_repo.find_submission(uow.session, form.org_id, submission_id, form_id=form.id)
    if row is None:
        raise NotFound(f"no submission {submission_id}")
    if row.status == "spam":
        raise ValidationFailed.single("submission_id", "a honeypot (spam) submission is never processed")
    return await reprocess_in(uow, context, form, submission_id)


async def unfinished_submissions(uow: UnitOfWork, form: Form, limit: int) -> list[str]:
    """The ids of the form's failed or never processed submissions, oldest first; the read transaction ends
    here, as each of them is then processed in its own."""
    ids = await form_repo.unfinished_submission_ids(uow.session, form.org_id, form.id, limit)
    await uow.rollback()
    return ids


@dataclass(frozen=True)
class Reprocessed:
    submission_id: str
    state: SubmissionState


async def reprocess_all(context: ServiceContext, form: Form, submission_ids: list[str]) -> list[Reprocessed]:
    """Process each submission again, one transaction each (as the sweep does)."""
    return [Reprocessed(sid, await reprocess(context, form, sid)) for sid in submission_ids]


async def sweep_once(context: ServiceContext) -> int:
    """Process the submissions left "received" longer than the sweep delay; returns how many were tried."""
    async with context.database.session() as session:
        stuck = await form_repo.stuck_submissions(session, context.clock.now(),
                                                  context.settings_as(Settings).submission_sweep_after_s)
    for item in stuck:
        try:
            form = await collaborators(context).form_cache.get(context, item.form_id)
            if form is not None:
                await reprocess(context, form, item.id)
        except Exception:
            log.exception("sweep_submission_failed", submission_id=item.id)
    return len(stuck)


async def submission_sweeper(context: ServiceContext) -> None:
    """Finish submissions left "received" by an unexpected processing error."""
    async def tick() -> None:
        await sweep_once(context)  # never "busy": a submission that keeps failing waits for the next round

    await run_periodically(context, tick, max(1.0, context.settings_as(Settings).submission_sweep_after_s / 3),
                           name="submission_sweeper")
