"""Which deliveries one multiple-ack may settle (no broker: deliveries stand in for aio-pika's)."""
from __future__ import annotations

from salesflow_shared.bus.rabbitmq import UnsettledDeliveries


class Delivery:
    def __init__(self, channel: object, tag: int, acks: list[tuple[int, bool]]) -> None:
        self.channel, self.delivery_tag, self._acks = channel, tag, acks

    async def ack(self, multiple: bool = False) -> None:
        self._acks.append((self.delivery_tag, multiple))


class Consumer:
    """The tracking under test, and every ack sent as (delivery tag, multiple)."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []
        self.unsettled = UnsettledDeliveries()

    def deliver(self, channel: object, tags: range) -> list[Delivery]:
        """Deliveries arriving on `channel`, in tag order, as the broker sends them."""
        batch = [Delivery(channel, tag, self.acks) for tag in tags]
        for message in batch:
            self.unsettled.received(message)
        return batch


async def test_a_batch_whose_older_deliveries_are_settled_is_acked_with_one_multiple_ack():
    consumer, channel = Consumer(), object()
    first, second = consumer.deliver(channel, range(1, 4)), consumer.deliver(channel, range(4, 8))
    await consumer.unsettled.ack_batch(first)
    await consumer.unsettled.ack_batch(second)
    assert consumer.acks == [(3, True), (7, True)]


async def test_a_batch_with_an_older_delivery_in_hand_is_acked_one_by_one():
    consumer, channel = Consumer(), object()
    older, newer = consumer.deliver(channel, range(1, 3)), consumer.deliver(channel, range(3, 6))
    await consumer.unsettled.ack_batch(newer)  # 1 and 2 are still being handled: a multiple-ack of 5 would ack them
    assert consumer.acks == [(3, False), (4, False), (5, False)]
    await consumer.unsettled.ack_batch(older)
    assert consumer.acks[3:] == [(2, True)]


async def test_a_delivery_settled_alone_no_longer_holds_back_later_batches():
    consumer, channel = Consumer(), object()
    parked, batch = consumer.deliver(channel, range(1, 2)), consumer.deliver(channel, range(2, 5))
    consumer.unsettled.settled(parked[0])  # e.g. sent to the retry queue and acked on its own
    await consumer.unsettled.ack_batch(batch)
    assert consumer.acks == [(4, True)]


async def test_after_a_reconnection_tags_of_the_old_channel_are_forgotten():
    consumer = Consumer()
    consumer.deliver(object(), range(1, 10))  # never settled: that channel is gone
    reopened = consumer.deliver(object(), range(1, 4))  # a new channel counts from 1 again
    await consumer.unsettled.ack_batch(reopened)
    assert consumer.acks == [(3, True)]


async def test_a_batch_mixing_channels_is_acked_one_by_one():
    consumer = Consumer()
    old, new = consumer.deliver(object(), range(7, 8)), consumer.deliver(object(), range(1, 3))
    await consumer.unsettled.ack_batch(old + new)
    assert consumer.acks == [(7, False), (1, False), (2, False)]
