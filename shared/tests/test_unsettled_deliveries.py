"""Which deliveries one multiple-ack may settle (no broker: deliveries stand in for aio-pika's)."""
from __future__ import annotations

from salesflow_shared.bus.rabbitmq import UnsettledDeliveries


class Delivery:
    def __init__(self, channel: object, tag: int, acks: list[tuple[int, bool]]) -> None:
        self.channel, self.delivery_tag, self._acks = channel, tag, acks

    async def ack(self, multiple: bool = False) -> None:
        self._acks.append((self.delivery_tag, multiple))


def deliveries(channel: object, tags: range, acks: list[tuple[int, bool]]) -> list[Delivery]:
    return [Delivery(channel, tag, acks) for tag in tags]


async def test_a_batch_whose_older_deliveries_are_settled_is_acked_with_one_multiple_ack():
    acks: list[tuple[int, bool]] = []
    channel = object()
    unsettled = UnsettledDeliveries()
    first, second = deliveries(channel, range(1, 4), acks), deliveries(channel, range(4, 8), acks)
    for message in first + second:
        unsettled.received(message)
    await unsettled.ack_batch(first)
    await unsettled.ack_batch(second)
    assert acks == [(3, True), (7, True)]


async def test_a_batch_with_an_older_delivery_in_hand_is_acked_one_by_one():
    acks: list[tuple[int, bool]] = []
    channel = object()
    unsettled = UnsettledDeliveries()
    older, newer = deliveries(channel, range(1, 3), acks), deliveries(channel, range(3, 6), acks)
    for message in older + newer:
        unsettled.received(message)
    await unsettled.ack_batch(newer)  # tags 1 and 2 are still being handled: a multiple-ack of 5 would ack them
    assert acks == [(3, False), (4, False), (5, False)]
    await unsettled.ack_batch(older)
    assert acks[3:] == [(2, True)]


async def test_a_delivery_settled_alone_no_longer_holds_back_later_batches():
    acks: list[tuple[int, bool]] = []
    channel = object()
    unsettled = UnsettledDeliveries()
    parked, batch = deliveries(channel, range(1, 2), acks), deliveries(channel, range(2, 5), acks)
    for message in parked + batch:
        unsettled.received(message)
    unsettled.settled(parked[0])  # e.g. sent to the retry queue and acked on its own
    await unsettled.ack_batch(batch)
    assert acks == [(4, True)]


async def test_after_a_reconnection_tags_of_the_old_channel_are_forgotten():
    acks: list[tuple[int, bool]] = []
    unsettled = UnsettledDeliveries()
    for message in deliveries(object(), range(1, 10), acks):  # never settled: that channel is gone
        unsettled.received(message)
    reopened = deliveries(object(), range(1, 4), acks)  # a new channel counts from 1 again
    for message in reopened:
        unsettled.received(message)
    await unsettled.ack_batch(reopened)
    assert acks == [(3, True)]


async def test_a_batch_mixing_channels_is_acked_one_by_one():
    acks: list[tuple[int, bool]] = []
    unsettled = UnsettledDeliveries()
    old = deliveries(object(), range(7, 8), acks)
    unsettled.received(old[0])
    new = deliveries(object(), range(1, 3), acks)
    for message in new:
        unsettled.received(message)
    await unsettled.ack_batch(old + new)
    assert acks == [(7, False), (1, False), (2, False)]
