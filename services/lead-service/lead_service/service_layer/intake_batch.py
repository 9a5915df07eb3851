"""Group commit for web-form intake: submissions arriving together are ingested in one transaction.

Each request hands its verified, parsed submission to the batcher and waits for its own result. A flusher
takes whatever is queued (no artificial wait: a lone submission goes at once; under load, those arriving
while a batch is being written form the next one), ingests them with the same de-duplication as always
(the same person twice in a batch: one lead, a resubmission), stores every raw row, and commits once. If
the batch fails for any reason, its submissions are processed one by one, each in its own transaction,
so one bad submission never takes others down and the semantics stay those of a single submission.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from salesflow_shared.app import ServiceContext

from ..adapters.repository import forms as form_repo
from ..domain.forms import Form
from ..domain.mapping import map_payload
from .ingest import Candidate, ingest
from .intake import Received, SubmissionState, accept_submission, submission_values

log = structlog.get_logger(__name__)


@dataclass
class Pending:
    form: Form
    payload: dict[str, Any]
    received: Received
    future: asyncio.Future[SubmissionState | None] = field(repr=False)


class IntakeBatcher:
    def __init__(self, context: ServiceContext, *, max_batch: int = 64, flushers: int = 2) -> None:
        self.context = context
        self.max_batch = max_batch
        self.flushers = flushers
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.batched_submissions = 0  # submissions committed as part of a batch of several (observability)

    async def accept(self, form: Form, payload: dict[str, Any], received: Received) -> SubmissionState | None:
        """The submission's state once committed, or None when its de-duplication key was already used."""
        self._ensure_flushers()
        future: asyncio.Future[SubmissionState | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(form, payload, received, future))
        return await future

    def _ensure_flushers(self) -> None:
        """Start the flushers, and replace any that ended: a request must never wait on a flusher that is gone
        (it would hang until the client gives up, and its retries too)."""
        for task in [t for t in self._tasks if t.done()]:
            if not task.cancelled() and task.exception() is not None:
                log.error("intake_flusher_died", error=repr(task.exception())[:300])
        self._tasks = [t for t in self._tasks if not t.done()]
        while len(self._tasks) < self.flushers:
            self._tasks.append(asyncio.create_task(self._run(), name=f"intake-batcher-{len(self._tasks)}"))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._flush(batch)
            finally:
                # Whatever ended the flush (even a cancellation surfacing from a cut database connection),
                # every waiting request gets an answer: its submission is then stored raw by the endpoint.
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(RuntimeError("intake interrupted"))

    async def _flush(self, batch: list[Pending]) -> None:
        by_org: dict[str, list[Pending]] = {}
        for item in batch:
            by_org.setdefault(item.form.org_id, []).append(item)
        for org_id, items in by_org.items():
            try:
                await self._together(org_id, items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed the batch, each submission is tried alone
                if not isinstance(exc, _GoAlone):
                    log.warning("intake_batch_fallback", size=len(items), error=str(exc)[:300])
                for item in items:
                    await self._alone(item)

    async def _together(self, org_id: str, items: list[Pending]) -> None:
        if len(items) == 1 or any(item.received.dedup_key for item in items):
            raise _GoAlone()  # keyed submissions need the per-row duplicate check
        from ..entrypoints.common import org_setup

        now = self.context.clock.now()
        async with self.context.uow() as uow:
            setup = await org_setup(self.context, uow.session, org_id)
            mapped = [map_payload(item.payload, item.form.spec, setup.custom_defs) for item in items]
            good = [(item, m.lead) for item, m in zip(items, mapped, strict=True) if m.lead is not None]
            outcomes = await ingest(uow, org_id, [
                Candidate(lead, origin="form", form_id=item.form.id, submission_id=item.received.submission_id)
                for item, lead in good], setup, now)
            by_item = {id(item): outcome for (item, _), outcome in zip(good, outcomes, strict=True)}
            states = []
            for item, m in zip(items, mapped, strict=True):
                outcome = by_item.get(id(item))
                states.append(SubmissionState.failed(m.errors) if outcome is None
                              else SubmissionState.accepted(outcome))
            await form_repo.insert_submissions(uow.session, [submission_values(item.form, item.received, state)
                                                             for item, state in zip(items, states, strict=True)])
            await uow.commit()
        self.batched_submissions += len(items)
        for item, state in zip(items, states, strict=True):
            if not item.future.done():
                item.future.set_result(state)

    async def _alone(self, item: Pending) -> None:
        from ..entrypoints.common import org_setup

        try:
            async with self.context.uow() as uow:
                setup = await org_setup(self.context, uow.session, item.form.org_id)
                state = await accept_submission(uow, item.form, setup, item.received, item.payload)
                if state is None:
                    await uow.rollback()
                else:
                    await uow.commit()
        except Exception as exc:  # noqa: BLE001 - the waiting request gets whatever failed (it then stores it raw)
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(state)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the service is stopping"))


class _GoAlone(Exception):
    pass
