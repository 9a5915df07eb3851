"""The outbox relay: publishes committed events with confirms; their "sent" mark commits only after the confirm.

Rows are claimed, marked and returned by one statement (`FOR UPDATE SKIP LOCKED`, so several replicas never
publish the same row at once); the lock is held while the batch is published and released by the commit of
that mark, after the confirms (a failed publish un-marks its row first). A crash between the confirm and that
commit rolls the mark back and publishes the batch again later: consumers absorb it (inbox).
The relay is woken right after a commit that wrote events, and polls as a safety net. A commit that lands while
a batch waits for its confirms is claimed at once, in a batch of its own beside it (on PostgreSQL, up to
`MAX_BATCHES_IN_FLIGHT` batches, each in its own transaction; their rows never overlap, as with replicas), instead
of waiting until that batch is done. Between batches, at most once per `purge_every_s`, it deletes published rows
older than the retention, so the table stays small.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .bus import EventBus, OutgoingMessage, Unroutable
from .db import Database, rows_affected
from .events import utcnow
from .infra_tables import outbox_table
from .observability import ServiceMetrics
from .retries import backoff_s
from .tracing import traced_publish

log = structlog.get_logger(__name__)

PURGE_BATCH = 1000
# Batches claimed and not yet done (publishing, awaiting confirms, committing their mark) at once, on PostgreSQL.
# SQLite has one writer at a time: a second claim would only wait for the first batch's commit, so one there.
MAX_BATCHES_IN_FLIGHT = 2


def claim_batch_statement(batch_size: int) -> Any:
    """One statement that locks the oldest unpublished rows (skipping rows another relay holds), marks them sent
    and returns them. Built once per relay and reused (its construct, cache key and compiled form).

    Marking before publishing is safe because the mark commits only after every confirm: a failed publish
    un-marks its row in the same transaction, and a crash before the commit rolls the mark back."""
    oldest = (select(outbox_table.c.id).where(outbox_table.c.published_at.is_(None)).order_by(outbox_table.c.id)
              .limit(batch_size).with_for_update(skip_locked=True).scalar_subquery())
    return (update(outbox_table).where(outbox_table.c.id.in_(oldest)).values(published_at=bindparam("sent_at"))
            .returning(outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.event_type,
                       outbox_table.c.payload, outbox_table.c.headers))


UNMARK_FAILED = update(outbox_table).where(outbox_table.c.id == bindparam("row_id")).values(
    published_at=None, attempts=outbox_table.c.attempts + 1, last_error=bindparam("error"))


class OutboxRelay:
    def __init__(self, database: Database, bus: EventBus, metrics: ServiceMetrics | None = None, *,
                 batch_size: int = 200, poll_interval_s: float = 1.0, max_backoff_s: float = 5.0,
                 retention_s: float = 0.0, purge_every_s: float = 60.0) -> None:
        self.database = database
        self.bus = bus
        self.metrics = metrics
        self.service = metrics.service if metrics is not None else "salesflow"
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.retention_s = retention_s
        self.purge_every_s = purge_every_s
        self._next_purge = 0.0
        self._claim_batch = claim_batch_statement(batch_size)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0  # batches failed in a row
        # Test seam: called after the batch is confirmed and before it is marked sent (a crash point).
        self.after_publish_hook: Callable[[list[str]], None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._next_purge = time.monotonic() + self.purge_every_s
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            self._task = None

    async def run(self) -> None:
        batches: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT if self.database.dialect == "postgresql" else 1)
        self._failures = 0
        try:
            while not self._stopping:
                if self._failures:
                    await asyncio.sleep(backoff_s(self._failures, base_s=0.1, max_s=self.max_backoff_s))
                    if self._stopping:
                        break
                self._wake.clear()  # a commit from now on may not be seen by this claim: it wakes the next
                await slots.acquire()
                claimed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                batch = asyncio.create_task(self._publish_batch(claimed, slots), name="outbox-relay-batch")
                batches.add(batch)
                batch.add_done_callback(batches.discard)
                if await claimed >= self.batch_size:
                    continue  # more may be waiting: no sleep
                if not self._failures and self.retention_s > 0 and time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + self.purge_every_s
                    try:
                        await self.purge_published(timedelta(seconds=self.retention_s))
                    except Exception as exc:  # noqa: BLE001 - housekeeping: try again next time
                        log.warning("outbox_purge_failed", error=str(exc)[:300])
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
                except TimeoutError:
                    pass
        finally:
            if batches:  # the batches in hand finish: their confirmed rows are marked sent
                await asyncio.gather(*batches, return_exceptions=True)

    async def _publish_batch(self, claimed: asyncio.Future[int], slots: asyncio.Semaphore) -> None:
        """One batch of `run`: `claimed` is given how many rows it claimed as soon as they are claimed (0 when
        the claim failed); a failure is counted, and wakes the loop to back off and try again."""
        def on_claimed(count: int) -> None:
            if not claimed.done():
                claimed.set_result(count)
        try:
            await self.publish_pending(on_claimed)
            self._failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the relay outlives any failure; it backs off and retries
            if self.metrics:
                self.metrics.publish_failures.inc()
            log.warning("outbox_publish_failed", error=str(exc)[:300])
            self._failures += 1
            self._wake.set()
        finally:
            slots.release()
            on_claimed(0)

    async def publish_pending(self, on_claimed: Callable[[int], None] | None = None) -> int:
        """Publish one batch; return how many rows were marked sent. `on_claimed` is told how many rows the batch
        claimed as soon as they are (before they are published)."""
        async with self.database.session() as session, session.begin():
            rows = sorted((await session.execute(self._claim_batch, {"sent_at": utcnow()})).all(), key=lambda r: r.id)
            if on_claimed is not None:
                on_claimed(len(rows))
            if not rows:
                return 0
            messages = [OutgoingMessage(event_id=r.event_id, event_type=r.event_type, body=r.payload.encode(),
                                        headers=dict(r.headers or {}),
                                        correlation_id=json.loads(r.payload).get("correlation_id"))
                        for r in rows]
            results = await asyncio.gather(*(traced_publish(self.service, m, self.bus.publish) for m in messages),
                                           return_exceptions=True)
            sent_ids, failed = [], []
            for row, message, result in zip(rows, messages, results, strict=True):
                if result is None or isinstance(result, Unroutable):
                    if isinstance(result, Unroutable):
                        log.info("event_unroutable", event_type=message.event_type, event_id=message.event_id)
                    sent_ids.append(row.id)
                    if self.metrics:
                        self.metrics.events_published.labels(message.event_type).inc()
                else:
                    failed.append((row.id, result))
            if self.after_publish_hook is not None:
                self.after_publish_hook([m.event_id for m in messages])
            for row_id, error in failed:  # left for the next batch
                await session.execute(UNMARK_FAILED, {"row_id": row_id, "error": str(error)[:1000]})
            if failed:
                if self.metrics:
                    self.metrics.publish_failures.inc(len(failed))
                if not sent_ids:
                    raise failed[0][1]
            return len(sent_ids)

    async def purge_published(self, older_than: timedelta, *, batch: int = PURGE_BATCH) -> int:
        """Delete rows published more than `older_than` ago, a batch per transaction (short locks); returns how
        many. Unpublished rows are never touched, however old. Rows are scanned from the oldest id, where
        the old published ones are, so no index on `published_at` is needed."""
        cutoff = utcnow() - older_than
        purged = 0
        while True:
            async with self.database.session() as session, session.begin():
                oldest = (select(outbox_table.c.id).where(outbox_table.c.published_at.is_not(None),
                                                          outbox_table.c.published_at < cutoff)
                          .order_by(outbox_table.c.id).limit(batch).scalar_subquery())
                result = await session.execute(delete(outbox_table).where(outbox_table.c.id.in_(oldest)))
                deleted = rows_affected(result)
            purged += deleted
            if deleted < batch:
                break
        if purged:
            log.info("outbox_purged", rows=purged)
        return purged

    async def lag(self) -> tuple[int, float]:
        """How many rows wait to be published, and the age in seconds of the oldest."""
        async with self.database.session() as session:
            count, oldest = (await session.execute(
                select(func.count(), func.min(outbox_table.c.created_at))
                .where(outbox_table.c.published_at.is_(None)))).one()
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:  # SQLite returns naive datetimes
                oldest = oldest.replace(tzinfo=utcnow().tzinfo)
            age = max(0.0, (utcnow() - oldest).total_seconds())
        return int(count), age


async def forget_events_about(session: AsyncSession, subject_ids: Sequence[str]) -> int:
    """For an erasure: delete this service's outbox rows about these subjects, published or not.

    Their payloads carry the personal data being erased. Unpublished ones go too, so nothing about an erased
    subject leaves after its erasure — except the erasure event itself, which the caller's unit of work
    adds on commit. Returns how many rows were deleted.
    """
    deleted = 0
    for subject_id in subject_ids:
        escaped = subject_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        result = await session.execute(delete(outbox_table).where(
            outbox_table.c.payload.like(f'%"subject_id":"{escaped}"%', escape="\\")))
        deleted += rows_affected(result)
    return deleted
