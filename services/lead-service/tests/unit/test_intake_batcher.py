"""The intake batcher never leaves a request waiting: whatever ends a flush, each waiting submission gets an
answer, and a flusher that ended is replaced on the next submission."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lead_service.service_layer.intake import Form
from lead_service.service_layer.intake_batch import IntakeBatcher

FORM = Form(id="form-1", org_id="org-1", name="Contact us", mapping={}, defaults={}, required=[], public_key="pk",
            signing_secret="s", honeypot_field="website", redirect_url=None, rate_limit_per_minute=60, version=1,
            allowed_origins=[])


class ScriptedBatcher(IntakeBatcher):
    """Stands in for the database: each processed submission takes the next scripted outcome."""

    def __init__(self, outcomes: list[Any]) -> None:
        super().__init__(context=None, flushers=1)  # type: ignore[arg-type]
        self.outcomes = outcomes

    async def _together(self, org_id: str, items: list[Any]) -> None:
        raise RuntimeError("go alone")

    async def _alone(self, item: Any) -> None:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):  # as the real one: the request gets its own failure
            item.future.set_exception(outcome)
        elif isinstance(outcome, BaseException):  # escapes, as a cancellation does
            raise outcome
        else:
            item.future.set_result(outcome)


async def test_a_flush_cut_short_answers_the_waiting_request_and_a_new_flusher_takes_over():
    # A cut connection can surface as CancelledError inside the flush: it ends that flusher task.
    batcher = ScriptedBatcher([asyncio.CancelledError(), {"status": "accepted"}])
    try:
        with pytest.raises(RuntimeError, match="interrupted"):
            await asyncio.wait_for(batcher.accept(FORM, {}, {"dedup_key": None}), timeout=2)
        answer = await asyncio.wait_for(batcher.accept(FORM, {}, {"dedup_key": None}), timeout=2)
        assert answer == {"status": "accepted"}
    finally:
        await batcher.aclose()


async def test_an_ordinary_failure_reaches_only_its_own_request():
    batcher = ScriptedBatcher([ConnectionResetError("database gone"), {"status": "accepted"}])
    try:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(batcher.accept(FORM, {}, {"dedup_key": None}), timeout=2)
        assert await asyncio.wait_for(batcher.accept(FORM, {}, {"dedup_key": None}), timeout=2) == {
            "status": "accepted"}
    finally:
        await batcher.aclose()
