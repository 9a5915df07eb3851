"""The in-process bus of the embedded mode: the RabbitMQ bus's semantics without a broker.

Routing by event type to one queue per consuming service, concurrent delivery up to the prefetch,
retries with the same growing delays, then a dead-letter list that can be listed and replayed. Messages
live in memory: a crash loses what was in flight, which is acceptable only for the embedded mode.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from .base import (
    LAST_ERROR_HEADER,
    PARKED_AT_HEADER,
    ROUTING_KEY_HEADER,
    EventBus,
    OutgoingMessage,
    ParkedMessage,
    Subscription,
    TransientFailure,
    Unroutable,
    failed_handling,
)

log = structlog.get_logger(__name__)


@dataclass
class _MemoryQueue:
    subscription: Subscription
    items: asyncio.Queue[tuple[bytes, dict[str, Any], str | None, str | None]] = field(
        default_factory=asyncio.Queue)
    parked: list[ParkedMessage] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    in_flight: int = 0


class InMemoryBus(EventBus):
    def __init__(self, *, on_parked: Any = None) -> None:
        self._queues: dict[str, _MemoryQueue] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._started = False
        self._on_parked = on_parked

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        await self.stop_consuming()
        self._started = False

    def is_healthy(self) -> bool:
        return self._started

    async def publish(self, message: OutgoingMessage) -> None:
        targets = [q for q in self._queues.values() if message.event_type in q.subscription.event_types]
        if not targets:
            raise Unroutable(message.event_type)
        headers = {**message.headers, ROUTING_KEY_HEADER: message.event_type}
        for queue in targets:
            queue.items.put_nowait((message.body, dict(headers), message.event_id, message.event_type))

    async def subscribe(self, subscription: Subscription) -> None:
        if subscription.queue in self._queues:
            # A second subscriber to the same queue competes for its messages, like a replica.
            queue = self._queues[subscription.queue]
        else:
            queue = self._queues[subscription.queue] = _MemoryQueue(subscription)
        for _ in range(max(1, min(subscription.prefetch, 16))):
            queue.workers.append(asyncio.create_task(self._work(queue, subscription)))

    async def _work(self, queue: _MemoryQueue, subscription: Subscription) -> None:
        while True:
            body, headers, event_id, event_type = await queue.items.get()
            queue.in_flight += 1
            try:
                await subscription.callback(body, headers)
            except asyncio.CancelledError:
                queue.items.put_nowait((body, headers, event_id, event_type))
                raise
            except TransientFailure:
                item = (body, headers, event_id, event_type)
                handle = asyncio.get_running_loop().call_later(0.5, queue.items.put_nowait, item)
                self._timers.add(handle)
            except Exception as exc:  # noqa: BLE001 - the handler failed: retry later or park, never drop
                delays = list(subscription.retry_delays_ms)
                failed = failed_handling(headers, exc, len(delays))
                headers = failed.headers
                if failed.parked:
                    queue.parked.append(ParkedMessage(event_id, event_type, failed.attempt,
                                                      headers[LAST_ERROR_HEADER], headers[PARKED_AT_HEADER],
                                                      body))
                    log.warning("event_parked", queue=subscription.queue, error=headers[LAST_ERROR_HEADER])
                    if self._on_parked is not None:
                        self._on_parked(subscription.queue)
                else:
                    item = (body, headers, event_id, event_type)
                    handle = asyncio.get_running_loop().call_later(
                        delays[failed.attempt - 1] / 1000, queue.items.put_nowait, item)
                    self._timers.add(handle)
            finally:
                queue.in_flight -= 1

    async def stop_consuming(self) -> None:
        for queue in self._queues.values():
            for worker in queue.workers:
                worker.cancel()
            await asyncio.gather(*queue.workers, return_exceptions=True)
            queue.workers.clear()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    async def list_parked(self, queue: str, limit: int = 100) -> list[ParkedMessage]:
        found = self._queues.get(queue)
        return list(found.parked[:limit]) if found else []

    async def replay_parked(self, queue: str, event_id: str | None = None) -> int:
        found = self._queues.get(queue)
        if found is None:
            return 0
        keep: list[ParkedMessage] = []
        replay: list[ParkedMessage] = []
        for parked in found.parked:
            (replay if event_id is None or parked.event_id == event_id else keep).append(parked)
        found.parked = keep
        for parked in replay:
            found.items.put_nowait((parked.body, {ROUTING_KEY_HEADER: parked.event_type}, parked.event_id,
                                    parked.event_type))
        return len(replay)
