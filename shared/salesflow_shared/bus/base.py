"""What every bus offers, whether RabbitMQ (full mode) or in-process (embedded mode).

The semantics are the same: routing by event type to one queue per consuming service, an acknowledged
delivery only after the handler succeeded, bounded retries with growing delays, then a dead-letter queue
whose messages can be listed with their last error and replayed.
"""
from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MessageCallback = Callable[[bytes, dict[str, Any]], Awaitable[None]]
BatchCallback = Callable[[list[tuple[bytes, dict[str, Any]]]], Awaitable[None]]

ATTEMPT_HEADER = "x-salesflow-attempt"
LAST_ERROR_HEADER = "x-salesflow-last-error"
ROUTING_KEY_HEADER = "x-salesflow-routing-key"
PARKED_AT_HEADER = "x-salesflow-parked-at"


class PermanentFailure(Exception):
    """A message that can never succeed (unparseable, unknown type): parked at once, not retried."""


class TransientFailure(Exception):
    """The handler could not reach its database (or the like): the message waits and comes back, and the
    attempt does not count towards parking it — an outage must not send good messages to the DLQ."""


class Unroutable(Exception):
    """The broker confirmed a message that no queue is bound to."""


@dataclass(frozen=True)
class OutgoingMessage:
    event_id: str
    event_type: str
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None


@dataclass(frozen=True)
class Subscription:
    """One consuming service: its queue name, the event types it is bound to and its callback."""

    queue: str
    event_types: Sequence[str]
    callback: MessageCallback
    retry_delays_ms: Sequence[int] = (1000, 5000, 30000)
    prefetch: int = 32
    # Optional: handle up to `batch_size` deliveries in one call (one transaction), acked together after it
    # succeeds. When the batch call fails, each message goes through `callback` alone, with the usual
    # retries and parking, so one bad message never holds the others back.
    batch_callback: BatchCallback | None = None
    batch_size: int = 200
    batch_wait_ms: int = 20
    # At most this many batches handled at once per consumer (None: no limit). With 1, deliveries that arrive
    # while a batch is handled wait and become the next batch: under load batches grow instead of multiplying,
    # for handlers whose transactions would otherwise contend (e.g. on one leaderboard's rows).
    max_batches_in_flight: int | None = None
    # Event types an earlier version of this consumer was bound to and no longer takes: a broker that keeps
    # bindings (RabbitMQ) has them removed when the queue is declared, so an upgraded deployment stops
    # receiving deliveries it would only ack.
    retired_event_types: Sequence[str] = ()


@dataclass(frozen=True)
class ParkedMessage:
    event_id: str | None
    event_type: str | None
    attempts: int
    last_error: str | None
    parked_at: str | None
    body: bytes


class EventBus(abc.ABC):
    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, message: OutgoingMessage) -> None:
        """Return only once the broker has taken responsibility for the message (confirm)."""

    @abc.abstractmethod
    async def subscribe(self, subscription: Subscription) -> None: ...

    @abc.abstractmethod
    async def stop_consuming(self) -> None:
        """Stop taking new deliveries; those in flight finish (graceful shutdown)."""

    @abc.abstractmethod
    def is_healthy(self) -> bool: ...

    @abc.abstractmethod
    async def list_parked(self, queue: str, limit: int = 100) -> list[ParkedMessage]: ...

    @abc.abstractmethod
    async def replay_parked(self, queue: str, event_id: str | None = None) -> int:
        """Send parked messages (one, or all when event_id is None) back to their queue; return how many."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate_error(exc: BaseException, limit: int = 2000) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:limit]


@dataclass(frozen=True)
class FailedHandling:
    """What a failed handling makes of a message: its headers with the attempt and the error (and the time it
    was parked), and whether it is parked or waits for retry `attempt` (the delay `retry_delays_ms[attempt - 1]`)."""

    attempt: int
    parked: bool
    headers: dict[str, Any]


def failed_handling(headers: dict[str, Any], exc: BaseException, retries: int) -> FailedHandling:
    """The one retry-or-park rule of both buses: a permanent failure, or one with no retry left, is parked."""
    attempt = int(headers.get(ATTEMPT_HEADER, 0)) + 1
    parked = isinstance(exc, PermanentFailure) or attempt > retries
    failed = {**headers, ATTEMPT_HEADER: attempt, LAST_ERROR_HEADER: truncate_error(exc)}
    if parked:
        failed[PARKED_AT_HEADER] = now_iso()
    return FailedHandling(attempt, parked, failed)
