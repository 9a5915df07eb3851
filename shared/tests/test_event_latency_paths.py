"""Nothing on an event's way waits for a timer or for unrelated work: the relay claims a new commit while an earlier
batch still waits for its confirms, and a batching consumer hands a lone delivery over at once."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from backbone_support import BackboneHarness, effect_count, harness_definition, publish_erased, start_context

from salesflow_shared.bus import InMemoryBus, OutgoingMessage, RabbitBus, Subscription
from salesflow_shared.events import LeadErasedV1, make_event
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, service_test_settings


class HeldPublishes(InMemoryBus):
    """The in-process bus, but a publish of an event about `held_subject` waits until `release` is set (a
    broker slow to confirm it)."""

    def __init__(self, held_subject: str) -> None:
        super().__init__()
        self.held = f'"subject_id":"{held_subject}"'.encode()
        self.release = asyncio.Event()

    async def publish(self, message: OutgoingMessage) -> None:
        if self.held in message.body:
            await self.release.wait()
        await super().publish(message)


async def test_a_commit_is_published_while_an_earlier_batch_still_waits_for_its_confirm(database_url):
    bus = HeldPublishes("slow-to-confirm")
    await bus.start()
    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url="", namespace="",
                                     service_name="test", migrate_on_start=False)
    context = await start_context(harness_definition(settings, BackboneHarness()), bus=bus)
    try:
        await publish_erased(context, "slow-to-confirm")
        await asyncio.sleep(0.2)  # its batch is claimed and waits for the confirm
        await publish_erased(context, "next")

        async def next_handled() -> None:
            assert await effect_count(context, "next") == 1
        await eventually(next_handled, timeout=5)
        assert await effect_count(context, "slow-to-confirm") == 0
        bus.release.set()

        async def both_handled_once() -> None:
            assert await effect_count(context) == 2
            assert (await context.relay.lag())[0] == 0
        await eventually(both_handled_once, timeout=10)
    finally:
        bus.release.set()
        await context.stop()
        await bus.close()


def erased(lead_id: str) -> OutgoingMessage:
    envelope = make_event(LeadErasedV1(lead_id=lead_id), org_id="org-a", subject_id=lead_id, producer="test")
    return OutgoingMessage(str(envelope.id), envelope.type, envelope.to_json())


async def test_a_batching_consumer_takes_a_lone_delivery_at_once_and_holds_later_ones_for_the_batch_in_hand(
        amqp_url, bus_namespace):
    bus = RabbitBus(amqp_url, namespace=bus_namespace)
    await bus.start()
    batches: list[tuple[float, list[str]]] = []
    gate = asyncio.Event()

    async def handle_batch(items: list[tuple[bytes, dict[str, Any]]]) -> None:
        leads = [json.loads(body)["data"]["lead_id"] for body, _ in items]
        batches.append((time.monotonic(), leads))
        if "slow" in leads:
            await gate.wait()

    async def handle_one(body: bytes, headers: dict[str, Any]) -> None:
        raise AssertionError("no batch fails here")

    try:
        await bus.subscribe(Subscription(queue="test.events", event_types=["LeadErased"], callback=handle_one,
                                         batch_callback=handle_batch, batch_wait_ms=60_000))
        began = time.monotonic()
        await bus.publish(erased("alone"))

        async def alone_handled() -> None:
            assert batches and batches[0][1] == ["alone"]
        await eventually(alone_handled, timeout=5)  # not after the minute of batch_wait_ms
        assert batches[0][0] - began < 5

        await bus.publish(erased("slow"))

        async def slow_in_hand() -> None:
            assert batches[-1][1] == ["slow"]
        await eventually(slow_in_hand, timeout=5)
        for i in range(3):
            await bus.publish(erased(f"later-{i}"))
        await asyncio.sleep(0.5)
        assert len(batches) == 2  # the later ones wait for the batch in hand
        gate.set()

        async def later_handled_together() -> None:
            assert [leads for _, leads in batches[2:]] == [["later-0", "later-1", "later-2"]]
        await eventually(later_handled_together, timeout=5)  # when that batch ended, not after the minute
    finally:
        gate.set()
        await bus.delete_topology()
        await bus.close()

