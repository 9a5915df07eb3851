"""The RabbitMQ bus on aio-pika (full mode).

Topology, all durable: the topic exchange `salesflow.events` (routing key = event type); per consuming
service a quorum queue bound to the types it handles; per retry delay a classic queue whose message TTL
dead-letters the message back into the service's queue (a queue per delay, so a long delay never holds up
a short one); and a quorum dead-letter queue `<queue>.dlq` for parked messages. A failed message is first
re-published (with confirms) to the retry or dead-letter queue and only then acked, so it is never lost
and never acked as if done.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from .base import (
    ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    PARKED_AT_HEADER,
    ROUTING_KEY_HEADER,
    EventBus,
    OutgoingMessage,
    ParkedMessage,
    PermanentFailure,
    Subscription,
    TransientFailure,
    Unroutable,
    failed_handling,
)

log = structlog.get_logger(__name__)

# What closing or cancelling on a channel or connection that is already gone raises: the broker's refusal,
# the client's "channel is closed", or the lost connection itself.
_CHANNEL_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError)


class RabbitBus(EventBus):
    def __init__(self, url: str, *, exchange: str = "salesflow.events", namespace: str = "",
                 client_name: str = "salesflow", publish_timeout_s: float = 15.0,
                 on_parked: Any = None, transient_retry_delay_s: float = 0.5,
                 connect_timeout_s: float = 30.0) -> None:
        self.url = url
        self.namespace = namespace
        self.exchange_name = namespace + exchange
        self.client_name = client_name
        self.publish_timeout_s = publish_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._on_parked = on_parked
        self.transient_retry_delay_s = transient_retry_delay_s
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._publish_lock = asyncio.Lock()
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._consumer_channels: list[AbstractChannel] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.declared_queues: list[str] = []

    def queue_name(self, queue: str) -> str:
        return self.namespace + queue

    async def start(self) -> None:
        # A broker that takes the TCP connection but never finishes the handshake (out of sockets, still
        # booting) fails the start-up after `connect_timeout_s` instead of holding it forever, so the process
        # exits with the reason and its supervisor starts it again.
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": self.client_name}, reconnect_interval=1.0,
            timeout=self.connect_timeout_s)
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=False)
        self._exchange = await self._publish_channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)

    async def close(self) -> None:
        await self.stop_consuming()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def is_healthy(self) -> bool:
        return self._connection is not None and not self._connection.is_closed and \
            self._publish_channel is not None and not self._publish_channel.is_closed

    async def publish(self, message: OutgoingMessage) -> None:
        assert self._exchange is not None, "bus not started"
        amqp_message = aio_pika.Message(
            message.body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.event_id, type=message.event_type, correlation_id=message.correlation_id,
            headers=dict(message.headers), timestamp=datetime.now(UTC), app_id=self.client_name,
        )
        result = await self._exchange.publish(amqp_message, routing_key=message.event_type, mandatory=True,
                                              timeout=self.publish_timeout_s)
        if not isinstance(result, aiormq.spec.Basic.Ack):
            raise Unroutable(message.event_type)

    async def subscribe(self, subscription: Subscription) -> None:
        assert self._connection is not None, "bus not started"
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=subscription.prefetch)
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        main_name = self.queue_name(subscription.queue)
        queue = await channel.declare_queue(main_name, durable=True, arguments={"x-queue-type": "quorum"})
        for event_type in subscription.event_types:
            await queue.bind(exchange, routing_key=event_type)
        for event_type in set(subscription.retired_event_types) - set(subscription.event_types):
            await queue.unbind(exchange, routing_key=event_type)  # a binding that is not there: a no-op
        retry_names = []
        for delay in subscription.retry_delays_ms:
            name = f"{main_name}.retry.{delay}ms"
            await channel.declare_queue(name, durable=True, arguments={
                "x-queue-type": "classic", "x-message-ttl": int(delay),
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": main_name})
            retry_names.append(name)
        dlq_name = f"{main_name}.dlq"
        await channel.declare_queue(dlq_name, durable=True, arguments={"x-queue-type": "quorum"})
        self.declared_queues.extend([main_name, *retry_names, dlq_name])

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            try:
                await self._handle(channel, message, subscription, retry_names, dlq_name)
            finally:
                if task is not None:
                    self._in_flight.discard(task)

        consume = on_message if subscription.batch_callback is None else \
            self._batching(channel, subscription, retry_names, dlq_name)
        tag = await queue.consume(consume, no_ack=False)
        self._consumers.append((queue, tag))
        self._consumer_channels.append(channel)

    def _batching(self, channel: AbstractChannel, subscription: Subscription, retry_names: list[str],
                  dlq_name: str) -> Any:
        """Hand deliveries over in batches (one call each, up to `batch_size`). A delivery that finds no batch in
        hand goes at once, with whatever came in the same read from the broker: a lone event never waits for a
        timer. Those that arrive while a batch is in hand wait for it to end (or `batch_wait_ms` at most), and
        go together: under load, batches grow."""
        pending: list[AbstractIncomingMessage] = []
        unsettled = UnsettledDeliveries()
        flush_task: list[asyncio.Task[None] | None] = [None]
        # While a batch is in hand: what starts the next flush `batch_wait_ms` after its first delivery, unless
        # the batch in hand ends first.
        flush_timer: list[asyncio.TimerHandle | None] = [None]
        batches_in_hand = [0]
        assert subscription.batch_callback is not None
        batch_callback = subscription.batch_callback
        in_flight = asyncio.Semaphore(subscription.max_batches_in_flight) \
            if subscription.max_batches_in_flight else None

        async def flush() -> None:
            if in_flight is None:
                await handle_pending()
                return
            async with in_flight:  # what arrives meanwhile is taken by the next flush, as one batch
                await handle_pending()

        async def handle_pending() -> None:
            batch = pending[:]
            pending.clear()
            flush_task[0] = None
            if not batch:
                return
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.add(task)
            batches_in_hand[0] += 1
            try:
                items = []
                for message in batch:
                    headers = dict(message.headers or {})
                    headers[ROUTING_KEY_HEADER] = headers.get(ROUTING_KEY_HEADER) or message.routing_key
                    items.append((message.body, headers))
                try:
                    await batch_callback(items)
                except Exception as exc:  # noqa: BLE001 - any handler failure is retried one by one or parked
                    if len(batch) == 1:  # the batch was this one message: its failure is known already
                        await self._handle(channel, batch[0], subscription, retry_names, dlq_name, failure=exc)
                        unsettled.settled(batch[0])
                        return
                    log.info("batch_failed_handling_one_by_one", size=len(batch), error=str(exc)[:200])
                    for message in batch:
                        await self._handle(channel, message, subscription, retry_names, dlq_name)
                        unsettled.settled(message)
                else:
                    try:
                        await unsettled.ack_batch(batch)
                    except _CHANNEL_GONE:
                        # The channel closed under the batch (a shutdown, a lost connection): the broker delivers
                        # these messages again and the inbox absorbs them; nothing is left to settle here.
                        log.info("batch_ack_lost_with_its_channel", size=len(batch))
            finally:
                batches_in_hand[0] -= 1
                if task is not None:
                    self._in_flight.discard(task)
                if flush_timer[0] is not None:  # what waited for this batch goes now, not when the timer ends
                    flush_timer[0].cancel()
                    start_flush()

        def start_flush() -> None:
            # (A task: it runs once the deliveries of this read from the broker are all in `pending`.)
            flush_timer[0] = None
            flush_task[0] = asyncio.create_task(flush())

        async def on_message(message: AbstractIncomingMessage) -> None:
            unsettled.received(message)
            pending.append(message)
            if len(pending) >= subscription.batch_size:
                if flush_timer[0] is not None:
                    flush_timer[0].cancel()
                    flush_timer[0] = None
                if flush_task[0] is not None:  # not handling yet (a running flush has cleared it): cancel
                    flush_task[0].cancel()
                await flush()
            elif flush_task[0] is None and flush_timer[0] is None:
                if batches_in_hand[0]:
                    flush_timer[0] = asyncio.get_running_loop().call_later(subscription.batch_wait_ms / 1000,
                                                                           start_flush)
                else:
                    start_flush()

        return on_message

    async def _handle(self, channel: AbstractChannel, message: AbstractIncomingMessage,
                      subscription: Subscription, retry_names: list[str], dlq_name: str,
                      failure: Exception | None = None) -> None:
        headers: dict[str, Any] = dict(message.headers or {})
        routing_key = headers.get(ROUTING_KEY_HEADER) or message.routing_key
        headers[ROUTING_KEY_HEADER] = routing_key
        try:
            if failure is not None:
                raise failure
            await subscription.callback(message.body, headers)
        except TransientFailure as exc:
            log.warning("event_handling_postponed", queue=subscription.queue, error=str(exc)[:300],
                        message_id=message.message_id)
            await asyncio.sleep(self.transient_retry_delay_s)
            await message.nack(requeue=True)
        except Exception as exc:  # noqa: BLE001 - the handler failed: retry later or park, never drop
            failed = failed_handling(headers, exc, len(retry_names))
            target = dlq_name if failed.parked else retry_names[failed.attempt - 1]
            log.warning("event_handling_failed", queue=subscription.queue, attempt=failed.attempt,
                        parked=failed.parked, error=failed.headers[LAST_ERROR_HEADER], message_id=message.message_id)
            try:
                await channel.default_exchange.publish(_copy(message, failed.headers), routing_key=target,
                                                       timeout=self.publish_timeout_s)
            except Exception:  # noqa: BLE001 - whatever stopped the hand-over, the message must not be lost
                # Could not hand it on: give it back to the broker rather than lose it.
                await message.nack(requeue=True)
                return
            await message.ack()
            if failed.parked and self._on_parked is not None:
                self._on_parked(subscription.queue)
        else:
            await message.ack()

    async def stop_consuming(self) -> None:
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except _CHANNEL_GONE:  # the channel may already be gone; nothing left to cancel
                pass
        self._consumers.clear()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=30)
        for channel in self._consumer_channels:
            try:
                await channel.close()
            except _CHANNEL_GONE:  # already closed with its connection
                pass
        self._consumer_channels.clear()

    async def list_parked(self, queue: str, limit: int = 100) -> list[ParkedMessage]:
        assert self._connection is not None
        channel = await self._connection.channel()
        parked: list[ParkedMessage] = []
        try:
            try:
                dlq = await channel.declare_queue(f"{self.queue_name(queue)}.dlq", passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return []  # this service consumes nothing (yet): nothing can be parked
            peeked = []
            for _ in range(limit):
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                peeked.append(message)
                parked.append(_parked(message))
            # Give them back explicitly before the channel closes, so a replay that follows at once
            # finds them in the queue.
            for message in peeked:
                await message.nack(requeue=True)
        finally:
            # Closing the channel returns every message we peeked at to the dead-letter queue.
            if not channel.is_closed:
                await channel.close()
        return parked

    async def replay_parked(self, queue: str, event_id: str | None = None) -> int:
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True)
        main_name = self.queue_name(queue)
        replayed = 0
        try:
            try:
                dlq = await channel.declare_queue(f"{main_name}.dlq", passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return 0
            # Messages skipped below stay unacked on this channel, so `get` never returns one twice:
            # the loop ends when the queue has nothing more to show.
            while True:
                message = await dlq.get(no_ack=False, fail=False)
                if message is None:
                    break
                if event_id is not None and message.message_id != event_id:
                    continue  # left unacked: back in the dead-letter queue when the channel closes
                headers = {k: v for k, v in (message.headers or {}).items()
                           if k not in (ATTEMPT_HEADER, LAST_ERROR_HEADER, PARKED_AT_HEADER)}
                await channel.default_exchange.publish(_copy(message, headers), routing_key=main_name)
                await message.ack()
                replayed += 1
        finally:
            if not channel.is_closed:
                await channel.close()
        return replayed

    async def delete_topology(self) -> None:
        """Remove this bus's queues and exchange (tests use a namespace and clean up after themselves)."""
        if self._connection is None:
            return
        channel = await self._connection.channel()
        for name in self.declared_queues:
            try:
                await channel.queue_delete(name)
            except _CHANNEL_GONE:  # the broker closes the channel on a refusal: go on with a new one
                channel = await self._connection.channel()
        try:
            await channel.exchange_delete(self.exchange_name)
        except _CHANNEL_GONE:  # already deleted, or the connection is gone: nothing left to clean up
            pass
        await channel.close()


class UnsettledDeliveries:
    """The deliveries of one consumer's channel not yet acked or nacked, so that a handled batch can be acked
    with one multiple-ack (one frame instead of one per message) whenever that is safe.

    A multiple-ack of tag N acks every unacked delivery up to N on the channel. Batches are handled
    concurrently, so it is sent only when every delivery up to the batch's last one is in the batch: no older
    delivery, possibly still being handled, can be acked with it. Otherwise the batch is acked one by one.
    A delivery stays unsettled until its ack or nack has been handed to the channel, so that a later batch's
    multiple-ack never covers (and so never acks twice) a tag whose own ack is still to be sent.
    Delivery tags count up per channel; after a reconnection they start again, so the tracking does too.
    """

    def __init__(self) -> None:
        self._channel: object = None
        self._tags: dict[int, None] = {}  # oldest first: deliveries arrive in tag order, dicts keep it

    def received(self, message: AbstractIncomingMessage) -> None:
        channel = _channel_of(message)
        if channel is not self._channel:
            self._channel, self._tags = channel, {}
        if message.delivery_tag is not None:  # a consumer without auto-ack always gets one
            self._tags[message.delivery_tag] = None

    def settled(self, message: AbstractIncomingMessage) -> None:
        if _channel_of(message) is self._channel and message.delivery_tag is not None:
            self._tags.pop(message.delivery_tag, None)

    def oldest_are(self, batch: list[AbstractIncomingMessage]) -> bool:
        """True when the batch's deliveries are all the unsettled ones up to its last."""
        last_tag = batch[-1].delivery_tag
        if self._channel is None or last_tag is None or any(_channel_of(m) is not self._channel for m in batch):
            return False
        in_batch = {m.delivery_tag for m in batch}
        for tag in self._tags:
            if tag > last_tag:
                break
            if tag not in in_batch:
                return False
        return True

    async def ack_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        if len(batch) > 1 and self.oldest_are(batch):
            await batch[-1].ack(multiple=True)
            for message in batch:
                self.settled(message)
            return
        for message in batch:
            await message.ack()
            self.settled(message)


def _channel_of(message: AbstractIncomingMessage) -> object:
    """The AMQP channel a delivery came on; None once that channel is closed (it can no longer be acked)."""
    try:
        return message.channel
    except aio_pika.exceptions.ChannelInvalidStateError:
        return None


def _copy(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    return aio_pika.Message(
        message.body, headers=headers, content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message.message_id, type=message.type,
        correlation_id=message.correlation_id, timestamp=message.timestamp, app_id=message.app_id,
    )


def _parked(message: AbstractIncomingMessage) -> ParkedMessage:
    headers = message.headers or {}
    return ParkedMessage(
        event_id=message.message_id, event_type=message.type, attempts=int(_text(headers.get(ATTEMPT_HEADER)) or 0),
        last_error=_text(headers.get(LAST_ERROR_HEADER)), parked_at=_text(headers.get(PARKED_AT_HEADER)),
        body=message.body,
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["RabbitBus", "PermanentFailure"]
