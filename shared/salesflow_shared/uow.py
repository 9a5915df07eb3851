"""The unit of work: one database transaction whose events go to the outbox in that same transaction."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from .bus import OutgoingMessage
from .clock import Clock, SystemClock
from .db import Database
from .events import Envelope, EventData, make_event, utcnow
from .infra_tables import outbox_table
from .logging import traceparent_var

# What a service records of its own events in the transaction that publishes them (see ServiceDefinition).
RecordPublished = Callable[["UnitOfWork", list[tuple[EventData, Envelope]]], Awaitable[None]]
# The events a commit wrote to the outbox, as the relay publishes them, each with its row's created_at.
CommittedEvents = list[tuple[OutgoingMessage, datetime]]


class UnitOfWork:
    def __init__(self, database: Database, producer: str,
                 after_commit: Callable[[CommittedEvents], None] | None = None,
                 notify_channel: str | None = None, clock: Clock | None = None,
                 record_published: RecordPublished | None = None) -> None:
        self.database = database
        self.producer = producer
        # The service's clock (ServiceContext.clock): handlers and use cases read the time from it.
        self.clock: Clock = clock or SystemClock()
        # Called after each commit with the events it put in the outbox (none: an empty list).
        self._after_commit = after_commit
        # PostgreSQL: NOTIFY on this channel in every committed transaction (delivered at commit, not before).
        self._notify_channel = notify_channel
        self._outgoing: list[Envelope] = []
        # The trace each event was published in (read when published: a batch of events commits outside it).
        self._traceparents: dict[str, str | None] = {}
        # Called by each commit with the events it publishes, in order, before their outbox rows are written.
        self._record_published = record_published
        self._published_data: dict[Any, EventData] = {}  # by event id, while a hook wants them
        # The outbox rows of this transaction's events a caller took and wrote in its own statement, with their
        # events: the commit writes none of them again and hands them to the relay with the rest.
        self._taken: list[tuple[dict[str, Any], Envelope]] = []
        self.published: list[Envelope] = []  # what the committed transactions put in the outbox
        self.session: AsyncSession

    async def __aenter__(self) -> UnitOfWork:
        self.session = self.database.session()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # Anything not committed is rolled back, including events: they never reach the outbox. Closing the session
        # rolls its transaction back and returns its connection in one step (a rollback() before it was a second
        # pass through the session's machinery, on every request and delivery, for the same ROLLBACK).
        self._forget_uncommitted()
        await self.session.close()

    @property
    def dialect(self) -> str:
        return self.database.dialect

    def publish(self, data: EventData, *, org_id: str, subject_id: str, subject_version: int = 1,
                occurred_at: datetime | None = None) -> Envelope:
        envelope = make_event(data, org_id=org_id, subject_id=subject_id, subject_version=subject_version,
                              occurred_at=occurred_at, producer=self.producer)
        self._outgoing.append(envelope)
        self._traceparents[str(envelope.id)] = traceparent_var.get()
        if self._record_published is not None:
            self._published_data[envelope.id] = data
        return envelope

    async def commit(self) -> None:
        if (self._taken or self._outgoing) and self._record_published is not None:
            published = [envelope for _, envelope in self._taken] + self._outgoing
            await self._record_published(self, [(self._published_data[e.id], e) for e in published])
        self._published_data.clear()
        rows = self.take_outbox_rows()
        if rows:
            await self.session.execute(INSERT_OUTBOX, rows)
        if self._notify_channel is not None:
            await self.session.execute(NOTIFY, {"channel": self._notify_channel})
        committed, self._taken = self._taken, []
        await self.session.commit()
        self.published.extend(envelope for _, envelope in committed)
        if self._after_commit is not None:
            self._after_commit([(outbox_message(row, envelope.correlation_id), row["created_at"])
                                for row, envelope in committed])

    def take_outbox_rows(self) -> list[dict[str, Any]]:
        """The outbox rows (for `outbox_table`, in publishing order) of the events published in this transaction
        and not yet taken, taken by a caller that writes them in its own statement together with its own write
        (one round trip instead of two): a handler's last write, or a `record_published` hook at the commit. The
        commit writes the rows nobody took and hands every row to the relay once committed. Empty once taken,
        until something else is published."""
        outgoing, self._outgoing = self._outgoing, []
        rows = [outbox_row(envelope, self._traceparents.pop(str(envelope.id), None)) for envelope in outgoing]
        self._taken.extend(zip(rows, outgoing, strict=True))
        return rows

    async def rollback(self) -> None:
        self._forget_uncommitted()
        await self.session.rollback()

    def _forget_uncommitted(self) -> None:
        """The events of the transaction being rolled back, and what was kept of them: none reaches the outbox."""
        self._outgoing.clear()
        self._taken.clear()
        self._traceparents.clear()
        self._published_data.clear()


NOTIFY = text("SELECT pg_notify(:channel, '')")
INSERT_OUTBOX = insert(outbox_table)  # built once: reused with each commit's rows


def outbox_message(row: Mapping[str, Any] | RowMapping, correlation_id: str | None) -> OutgoingMessage:
    """What the relay publishes for an outbox row (as `outbox_row` builds it or as read back from the table)."""
    return OutgoingMessage(event_id=row["event_id"], event_type=row["event_type"], body=row["payload"].encode(),
                           headers=dict(row["headers"] or {}), correlation_id=correlation_id)


def outbox_row(envelope: Envelope, traceparent: str | None) -> dict[str, Any]:
    headers: dict[str, Any] = {"x-org-id": envelope.org_id}
    if traceparent:
        headers["traceparent"] = traceparent
    return {
        "event_id": str(envelope.id), "event_type": envelope.type, "org_id": envelope.org_id,
        "payload": envelope.to_json().decode(), "headers": headers, "created_at": utcnow(),
    }
