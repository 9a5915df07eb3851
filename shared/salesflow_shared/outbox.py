"""The outbox relay: publishes committed events with confirms; their "sent" mark commits only after the confirm.

Two ways a row reaches the broker:

- **Handed over** (the hot path): the unit of work that commits events hands them to its process's relay right
  after the commit, and the relay publishes them at once, without reading them back. Their "sent" marks are
  written together a moment later (`mark_delay_s`), one UPDATE and commit for every row confirmed meanwhile, so a
  delivery costs no relay transaction of its own. Until its mark commits, a row is "in hand": published or
  being published by this process. A crash before the mark leaves the row unmarked and it is published again by
  a sweep: consumers absorb the copy (inbox), as they absorb any redelivery. A failed publish keeps the rows in
  hand and they are tried again after a back-off.
- **Swept**: rows nobody holds (a crashed process's, another process's writes such as a migration's backfill)
  are claimed, marked and returned by one statement (`FOR UPDATE SKIP LOCKED`, so several replicas never sweep
  the same row at once); the lock is held while the batch is published and released by the commit of that mark,
  after the confirms (a failed publish un-marks its row first). The relay sweeps at start and then every
  `poll_interval_s` (more often while it fails or finds full batches), only rows created before this process
  started or longer than `sweep_after_s` ago, and never one as new as the oldest row it holds: another live
  replica's rows in hand are left to it.

Between sweeps, at most once per `purge_every_s`, it deletes published rows older than the retention, so the
table stays small.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .bus import EventBus, OutgoingMessage, Unroutable
from .db import Database, counted_as, rows_affected
from .events import utcnow
from .infra_tables import outbox_table
from .observability import ServiceMetrics
from .retries import backoff_s
from .tracing import traced_publish
from .uow import outbox_message

log = structlog.get_logger(__name__)

PURGE_BATCH = 1000
# Batches claimed and not yet done (publishing, awaiting confirms, committing their mark) at once, on PostgreSQL.
# SQLite has one writer at a time: a second claim would only wait for the first batch's commit, so one there.
MAX_BATCHES_IN_FLIGHT = 2
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)  # a sweep called with no cutoff takes every unpublished row


def claim_batch_statement(batch_size: int) -> Any:
    """One statement that locks the oldest unpublished rows (skipping rows another relay holds), marks them sent
    and returns them. Built once per relay and reused (its construct, cache key and compiled form).

    Marking before publishing is safe because the mark commits only after every confirm: a failed publish
    un-marks its row in the same transaction, and a crash before the commit rolls the mark back."""
    oldest = (select(outbox_table.c.id).where(outbox_table.c.published_at.is_(None),
                                              outbox_table.c.created_at < bindparam("created_before"))
              .order_by(outbox_table.c.id).limit(batch_size).with_for_update(skip_locked=True).scalar_subquery())
    return (update(outbox_table).where(outbox_table.c.id.in_(oldest)).values(published_at=bindparam("sent_at"))
            .returning(outbox_table.c.id, outbox_table.c.event_id, outbox_table.c.event_type,
                       outbox_table.c.payload, outbox_table.c.headers))


# The "sent" marks of rows published from hand; a row a sweep marked meanwhile keeps its mark.
MARK_SENT = update(outbox_table).where(outbox_table.c.event_id.in_(bindparam("event_ids", expanding=True)),
                                       outbox_table.c.published_at.is_(None)).values(published_at=bindparam("sent_at"))
UNMARK_FAILED = update(outbox_table).where(outbox_table.c.id == bindparam("row_id")).values(
    published_at=None, attempts=outbox_table.c.attempts + 1, last_error=bindparam("error"))


class OutboxRelay:
    def __init__(self, database: Database, bus: EventBus, metrics: ServiceMetrics | None = None, *,
                 batch_size: int = 200, poll_interval_s: float = 1.0, max_backoff_s: float = 5.0,
                 retention_s: float = 0.0, purge_every_s: float = 60.0, mark_delay_s: float = 0.5,
                 sweep_after_s: float = 10.0) -> None:
        self.database = database
        self.bus = bus
        self.metrics = metrics
        self.service = metrics.service if metrics is not None else "salesflow"
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.retention_s = retention_s
        self.purge_every_s = purge_every_s
        self.mark_delay_s = mark_delay_s
        self.sweep_after_s = sweep_after_s
        self._next_purge = 0.0
        self._claim_batch = claim_batch_statement(batch_size)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0  # batches failed in a row
        self._started_at = utcnow()
        # Handed over by this process's commits and not yet published (or to be tried again).
        self._handed: list[tuple[OutgoingMessage, datetime]] = []
        # Every row in hand (handed over, not yet marked sent), by event id, with its created_at: what sweeps
        # leave alone.
        self._in_hand: dict[str, datetime] = {}
        self._to_mark: list[str] = []  # confirmed, mark not yet written
        self._confirmed: set[str] = set()  # confirmed, mark not yet committed: published, whatever the row says
        self._marker: asyncio.Task[None] | None = None
        # Test seam: called after the batch is confirmed and before it is marked sent (a crash point).
        self.after_publish_hook: Callable[[list[str]], None] | None = None

    def hand_over(self, events: list[tuple[OutgoingMessage, datetime]]) -> None:
        """Events a commit has just written to the outbox (with their rows' created_at): published from here,
        without being read back."""
        for message, created_at in events:
            self._in_hand[message.event_id] = created_at
        self._handed.extend(events)
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        # A fresh start holds nothing: whatever a previous run left unpublished or unmarked is swept.
        self._started_at = utcnow()
        self._handed, self._to_mark = [], []
        self._in_hand.clear()
        self._confirmed.clear()
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

    @counted_as("relay")
    async def run(self) -> None:
        batches: set[asyncio.Task[None]] = set()
        in_flight = MAX_BATCHES_IN_FLIGHT if self.database.dialect == "postgresql" else 1
        sweep_slots = asyncio.Semaphore(in_flight)
        handed_slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        self._failures = 0
        next_sweep = time.monotonic()  # rows left before this process started go first

        def launch(work: Any, name: str) -> None:
            batch = asyncio.create_task(work, name=name)
            batches.add(batch)
            batch.add_done_callback(batches.discard)
        try:
            while not self._stopping:
                if self._failures:
                    await asyncio.sleep(backoff_s(self._failures, base_s=0.1, max_s=self.max_backoff_s))
                    if self._stopping:
                        break
                    next_sweep = min(next_sweep, time.monotonic())
                self._wake.clear()  # a hand-over from now on is not in this batch: it wakes the next
                if self._handed:
                    await handed_slots.acquire()
                    handed, self._handed = self._handed[:self.batch_size], self._handed[self.batch_size:]
                    launch(self._publish_handed(handed, handed_slots), "outbox-relay-handed")
                if time.monotonic() >= next_sweep:
                    await sweep_slots.acquire()
                    claimed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                    launch(self._sweep_batch(claimed, sweep_slots), "outbox-relay-sweep")
                    full = await claimed >= self.batch_size
                    next_sweep = time.monotonic() + (0 if full else self.poll_interval_s)
                if self._handed or time.monotonic() >= next_sweep:
                    continue  # more is waiting: no sleep
                if not self._failures and self.retention_s > 0 and time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + self.purge_every_s
                    try:
                        await self.purge_published(timedelta(seconds=self.retention_s))
                    except Exception as exc:  # noqa: BLE001 - housekeeping: try again next time
                        log.warning("outbox_purge_failed", error=str(exc)[:300])
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_sweep - time.monotonic()))
                except TimeoutError:
                    pass
        finally:
            if batches:  # the batches in hand finish: their confirmed rows are marked sent
                await asyncio.gather(*batches, return_exceptions=True)
            if self._handed:  # one last try; what fails is left to a sweep
                await self._publish_handed(self._handed, None)
                self._handed = []
            if self._marker is not None:
                self._marker.cancel()
                self._marker = None
            try:
                await self._mark_confirmed()
            except Exception as exc:  # noqa: BLE001 - unmarked rows are swept and published again: a copy
                log.warning("outbox_mark_failed", error=str(exc)[:300])

    async def _publish_handed(self, handed: list[tuple[OutgoingMessage, datetime]],
                              slots: asyncio.Semaphore | None) -> None:
        """Publish rows handed over: the confirmed ones wait for their mark, the failed ones go back to be
        tried again after a back-off (still in hand, so no sweep takes them meanwhile)."""
        try:
            messages = [message for message, _ in handed]
            sent, failed = await self._publish(messages)
            if self.after_publish_hook is not None:
                self.after_publish_hook([m.event_id for m in messages])
            if sent:
                self._to_mark.extend(message.event_id for message in sent)
                self._confirmed.update(message.event_id for message in sent)
                if self._marker is None or self._marker.done():
                    self._marker = asyncio.create_task(self._mark_later(), name="outbox-relay-marks")
            if failed:
                failed_ids = {message.event_id for message, _ in failed}
                self._handed[:0] = [entry for entry in handed if entry[0].event_id in failed_ids]
                self._failed(failed[0][1])
            else:
                self._failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the relay outlives any failure; it backs off and retries
            self._handed[:0] = handed
            self._failed(exc)
        finally:
            if slots is not None:
                slots.release()

    async def _mark_later(self) -> None:
        """Write the marks of the rows confirmed within `mark_delay_s`, together; on a failure (the database
        away) keep them and try again after a back-off."""
        failures = 0
        while self._to_mark:
            await asyncio.sleep(self.mark_delay_s if not failures else
                                backoff_s(failures, base_s=0.1, max_s=self.max_backoff_s))
            try:
                await self._mark_confirmed()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept in hand; a crash meanwhile means a copy, never a loss
                failures += 1
                log.warning("outbox_mark_failed", error=str(exc)[:300])

    async def _mark_confirmed(self) -> None:
        event_ids, self._to_mark = self._to_mark, []
        if not event_ids:
            return
        try:
            async with self.database.session() as session, session.begin():
                for start in range(0, len(event_ids), self.batch_size):
                    await session.execute(MARK_SENT, {"event_ids": event_ids[start:start + self.batch_size],
                                                      "sent_at": utcnow()})
        except BaseException:
            self._to_mark[:0] = event_ids
            raise
        for event_id in event_ids:
            self._in_hand.pop(event_id, None)
            self._confirmed.discard(event_id)

    def _failed(self, error: BaseException) -> None:
        if self.metrics:
            self.metrics.publish_failures.inc()
        log.warning("outbox_publish_failed", error=str(error)[:300])
        self._failures += 1
        self._wake.set()

    async def _sweep_batch(self, claimed: asyncio.Future[int], slots: asyncio.Semaphore) -> None:
        """One sweep of `run`: `claimed` is given how many rows it claimed as soon as they are claimed (0 when
        the claim failed); a failure is counted, and wakes the loop to back off and try again."""
        def on_claimed(count: int) -> None:
            if not claimed.done():
                claimed.set_result(count)
        try:
            await self.publish_pending(on_claimed, created_before=self.sweep_cutoff())
            self._failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the relay outlives any failure; it backs off and retries
            self._failed(exc)
        finally:
            slots.release()
            on_claimed(0)

    def sweep_cutoff(self) -> datetime:
        """Sweeps take rows created before this: before the process started or `sweep_after_s` ago, whichever
        is later, and before the oldest row this process holds."""
        cutoff = max(self._started_at, utcnow() - timedelta(seconds=self.sweep_after_s))
        if self._in_hand:
            cutoff = min(cutoff, min(self._in_hand.values()))
        return cutoff

    async def _publish(self, messages: list[OutgoingMessage]) -> tuple[list[OutgoingMessage],
                                                                       list[tuple[OutgoingMessage, BaseException]]]:
        """Publish with confirms, all at once: what was confirmed (or had no queue bound), and what failed."""
        results = await asyncio.gather(*(traced_publish(self.service, m, self.bus.publish) for m in messages),
                                       return_exceptions=True)
        sent, failed = [], []
        for message, result in zip(messages, results, strict=True):
            if result is None or isinstance(result, Unroutable):
                if isinstance(result, Unroutable):
                    log.info("event_unroutable", event_type=message.event_type, event_id=message.event_id)
                sent.append(message)
                if self.metrics:
                    self.metrics.events_published.labels(message.event_type).inc()
            else:
                failed.append((message, result))
        if failed and self.metrics:
            self.metrics.publish_failures.inc(len(failed))
        return sent, failed

    async def publish_pending(self, on_claimed: Callable[[int], None] | None = None,
                              created_before: datetime | None = None) -> int:
        """Sweep one batch of rows nobody holds (created before `created_before`; every unpublished row when
        None); return how many rows were marked sent. `on_claimed` is told how many rows the batch claimed as
        soon as they are (before they are published)."""
        async with self.database.session() as session, session.begin():
            rows = sorted((await session.execute(self._claim_batch, {
                "sent_at": utcnow(), "created_before": created_before or FAR_FUTURE})).all(), key=lambda r: r.id)
            if on_claimed is not None:
                on_claimed(len(rows))
            if not rows:
                return 0
            messages = [outbox_message(r._mapping, json.loads(r.payload).get("correlation_id")) for r in rows]
            sent, failed = await self._publish(messages)
            if self.after_publish_hook is not None:
                self.after_publish_hook([m.event_id for m in messages])
            row_ids = {r.event_id: r.id for r in rows}
            for message, error in failed:  # left for the next batch
                await session.execute(UNMARK_FAILED, {"row_id": row_ids[message.event_id], "error": str(error)[:1000]})
            if failed and not sent:
                raise failed[0][1]
            return len(sent)

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
        """How many rows wait to be published, and the age in seconds of the oldest. Rows this process has
        published and not yet marked sent do not wait."""
        waiting = select(func.count(), func.min(outbox_table.c.created_at)).where(outbox_table.c.published_at.is_(None))
        if self._confirmed:
            waiting = waiting.where(outbox_table.c.event_id.not_in(list(self._confirmed)))
        async with self.database.session() as session:
            count, oldest = (await session.execute(waiting)).one()
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
