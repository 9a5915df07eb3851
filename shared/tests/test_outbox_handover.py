"""The relay's hot path: events a commit hands over are published without being read back, and their "sent"
marks are written together; what no live process holds is swept, so a crash costs a copy, never an event."""
from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from backbone_support import BackboneHarness, effect_count, harness_definition, publish_erased, start_context

from salesflow_shared.bus import InMemoryBus, OutgoingMessage
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.outbox import OutboxRelay
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, service_test_settings


class BusThatFailsFirst(InMemoryBus):
    """The in-process bus, but the first publish of each event fails (a broker that went away a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: dict[str, int] = {}

    async def publish(self, message: OutgoingMessage) -> None:
        self.attempts[message.event_id] = self.attempts.get(message.event_id, 0) + 1
        if self.attempts[message.event_id] == 1:
            raise ConnectionError("broker connection lost")
        await super().publish(message)


@pytest.fixture(params=["rabbitmq", "memory", "embedded"])
async def service(request, database_url, amqp_url, bus_namespace, tmp_path):
    harness = BackboneHarness()
    if request.param == "embedded":
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    settings = service_test_settings(
        ServiceSettings, database_url=database_url, amqp_url=amqp_url if request.param == "rabbitmq" else "",
        namespace=bus_namespace, service_name="test", migrate_on_start=False)
    context = await start_context(harness_definition(settings, harness))
    yield context, harness
    await context.stop()


async def outbox_rows(context) -> list[sa.Row]:
    async with context.database.session() as session:
        return list((await session.execute(sa.select(outbox_table.c.event_id, outbox_table.c.published_at)
                                           .order_by(outbox_table.c.id))).all())


async def test_commits_one_by_one_are_published_at_once_and_marked_sent_in_one_statement(service):
    context, harness = service
    context.relay.mark_delay_s = 2.0
    for i in range(5):
        await publish_erased(context, f"one-by-one-{i}")

    async def delivered():
        for i in range(5):
            assert await effect_count(context, f"one-by-one-{i}") == 1
    await eventually(delivered)

    async def marked():
        rows = await outbox_rows(context)
        assert len(rows) == 5 and all(row.published_at is not None for row in rows)
        return rows
    rows = await eventually(marked)
    # One UPDATE marked all five (a sweep would have claimed them with a time of its own, batch by batch).
    assert len({row.published_at for row in rows}) == 1
    assert sum(harness.calls.values()) == 5


async def test_a_crash_between_the_confirm_and_the_mark_costs_a_copy_never_the_event(service):
    context, harness = service
    context.relay.mark_delay_s = 3600  # the process "dies" before it marks anything
    for i in range(3):
        await publish_erased(context, f"unmarked-{i}")

    async def delivered():
        assert await effect_count(context) == 3
    await eventually(delivered)
    assert all(row.published_at is None for row in await outbox_rows(context))
    assert (await context.relay.lag())[0] == 0  # published: none of them waits, marked or not

    # The process comes back: its new relay sweeps what the dead one published but never marked.
    restarted = OutboxRelay(context.database, context.bus, poll_interval_s=0.05)
    restarted.start()
    try:
        async def swept():  # a sweep marks rows only once the broker has confirmed them: published again
            assert all(row.published_at is not None for row in await outbox_rows(context))
        await eventually(swept)
        await asyncio.sleep(0.3)
        assert await effect_count(context) == 3  # the copies were absorbed by the inbox
        assert sum(harness.calls.values()) == 3
    finally:
        await restarted.stop()


async def test_a_live_process_rows_in_hand_are_left_to_it_by_another_replica_sweep(service):
    context, harness = service
    other_replica = OutboxRelay(context.database, context.bus, sweep_after_s=30)
    other_replica.start()
    try:
        context.relay.mark_delay_s = 3600
        await publish_erased(context, "held")
        assert await other_replica.publish_pending(created_before=other_replica.sweep_cutoff()) == 0
        # Once they are older than `sweep_after_s` (the holder died, say), a sweep takes them.
        other_replica.sweep_after_s = 0
        assert await other_replica.publish_pending(created_before=other_replica.sweep_cutoff()) == 1
    finally:
        await other_replica.stop()


async def test_a_failed_publish_from_hand_is_tried_again_and_not_swept_meanwhile(database_url):
    harness = BackboneHarness()
    bus = BusThatFailsFirst()
    settings = service_test_settings(ServiceSettings, database_url=database_url, service_name="test",
                                     migrate_on_start=False)
    context = await start_context(harness_definition(settings, harness), bus=bus)
    try:
        context.relay.sweep_after_s = 0.0  # a sweep would take any row nobody holds at once
        await publish_erased(context, "retried")

        async def delivered():
            assert await effect_count(context, "retried") == 1
        await eventually(delivered)
        [attempts] = bus.attempts.values()
        assert attempts == 2  # failed once, then published from hand again after a back-off
        assert harness.calls["retried"] == 1  # ...and no sweep published a copy meanwhile
    finally:
        await context.stop()


def test_marks_are_written_before_other_replicas_would_sweep_the_rows():
    """The marks' delay is the window a live replica's published rows stay unmarked: a setting that reaches the
    other replicas' sweep age (they would publish those rows again, every time) is refused at start."""
    assert ServiceSettings(service_name="test").outbox_mark_delay_s < ServiceSettings(
        service_name="test").outbox_sweep_after_s
    with pytest.raises(ValueError, match="SALESFLOW_OUTBOX_MARK_DELAY_S"):
        ServiceSettings(service_name="test", outbox_mark_delay_s=10, outbox_sweep_after_s=10)
