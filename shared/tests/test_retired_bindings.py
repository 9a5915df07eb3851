"""An upgraded consumer that no longer takes an event type stops receiving it: RabbitMQ keeps a queue's bindings
across restarts, so the declaration unbinds the types the subscription names as retired."""
from __future__ import annotations

from typing import Any

import pytest

from salesflow_shared.bus import OutgoingMessage, RabbitBus, Subscription, Unroutable
from salesflow_shared.events import LeadCreatedV1, LeadErasedV1
from salesflow_shared.testing import eventually


def message(event_type: str, number: int) -> OutgoingMessage:
    return OutgoingMessage(f"event-{number}", event_type, f'{{"type": "{event_type}"}}'.encode())


async def test_a_retired_event_type_is_unbound_and_a_new_queue_declares_it_without_error(amqp_url, bus_namespace):
    async def unused(body: bytes, headers: dict[str, Any]) -> None:
        raise AssertionError("the earlier version is stopped before anything is published")

    created, erased = LeadCreatedV1.event_type, LeadErasedV1.event_type
    earlier = RabbitBus(amqp_url, namespace=bus_namespace)
    await earlier.start()
    # The earlier version: bound to both types.
    await earlier.subscribe(Subscription(queue="upgraded", event_types=[created, erased], callback=unused))
    await earlier.close()

    upgraded = RabbitBus(amqp_url, namespace=bus_namespace)
    await upgraded.start()
    try:
        got: list[str] = []

        async def take(body: bytes, headers: dict[str, Any]) -> None:
            got.append(body.decode())
        await upgraded.subscribe(Subscription(queue="upgraded", event_types=[erased], callback=take,
                                              retired_event_types=[created]))
        # A queue that never had the binding: declaring it with the type retired is not an error.
        await upgraded.subscribe(Subscription(queue="fresh", event_types=[erased], callback=take,
                                              retired_event_types=[created]))
        with pytest.raises(Unroutable):  # neither queue is bound to it any more
            await upgraded.publish(message(created, 1))
        await upgraded.publish(message(erased, 2))

        async def erasures_delivered() -> None:
            assert len(got) == 2  # one per queue
        await eventually(erasures_delivered, timeout=10)
        assert all('"LeadErased"' in body for body in got), got
    finally:
        await upgraded.close()
