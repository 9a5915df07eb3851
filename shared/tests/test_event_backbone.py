"""The event backbone against the real PostgreSQL and RabbitMQ (and the in-process bus, same semantics)."""
from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from backbone_support import BackboneHarness, effect_count, harness_definition, publish_erased, start_context

from salesflow_shared.events import LeadErasedV1
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, service_test_settings


@pytest.fixture(params=["rabbitmq", "batched", "memory", "embedded"])
async def backbone(request, database_url, amqp_url, bus_namespace, tmp_path):
    """rabbitmq: PostgreSQL + RabbitMQ; batched: the same, consuming in batches; memory: PostgreSQL +
    in-process bus; embedded: SQLite + in-process bus."""
    harness = BackboneHarness()
    if request.param == "embedded":
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    settings = service_test_settings(
        ServiceSettings, database_url=database_url,
        amqp_url=amqp_url if request.param in ("rabbitmq", "batched") else "", namespace=bus_namespace,
        service_name="test", migrate_on_start=False)
    context = await start_context(harness_definition(settings, harness, batched=request.param == "batched"))
    yield context, harness
    await context.stop()


async def test_published_event_reaches_the_consumer_once(backbone):
    context, harness = backbone
    await publish_erased(context, "lead-1")

    async def delivered():
        assert await effect_count(context, "lead-1") == 1
    await eventually(delivered)


async def test_event_in_a_rolled_back_transaction_is_never_published(backbone):
    context, harness = backbone
    async with context.uow() as uow:
        uow.publish(LeadErasedV1(lead_id="ghost"), org_id="org-a", subject_id="ghost")
        await uow.rollback()
    async with context.uow() as uow:
        uow.publish(LeadErasedV1(lead_id="ghost-2"), org_id="org-a", subject_id="ghost-2")
        # leaving the block without commit rolls back too
    await publish_erased(context, "marker")

    async def marker_delivered():
        assert await effect_count(context, "marker") == 1
    await eventually(marker_delivered)
    assert harness.calls["ghost"] == 0 and harness.calls["ghost-2"] == 0
    async with context.database.session() as session:
        rows = (await session.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one()
    assert rows == 1  # only the marker ever reached the outbox


async def test_failing_handler_is_retried_with_delay_then_parked_and_replayed(backbone):
    context, harness = backbone
    harness.failures["poison"] = 3  # retry delays are [100, 200] ms: 1 try + 2 retries, then parked
    envelope = await publish_erased(context, "poison")

    async def parked():
        items = await context.bus.list_parked(context.queue)
        assert [p.event_id for p in items] == [str(envelope.id)]
        return items[0]
    item = await eventually(parked)
    assert harness.calls["poison"] == 3
    assert item.attempts == 3
    assert "induced failure for poison" in (item.last_error or "")
    assert await effect_count(context, "poison") == 0

    # listing does not consume: the message is still parked
    assert len(await context.bus.list_parked(context.queue)) == 1
    assert await context.bus.replay_parked(context.queue, str(envelope.id)) == 1

    async def replayed():
        assert await effect_count(context, "poison") == 1
    await eventually(replayed)
    assert await context.bus.list_parked(context.queue) == []


async def test_database_outage_postpones_without_using_up_the_retries(backbone):
    context, harness = backbone
    harness.outages["outage"] = 4  # more than the two retries: counted as failures it would be parked
    await publish_erased(context, "outage")

    async def done():
        assert await effect_count(context, "outage") == 1
    await eventually(done, timeout=20)
    assert harness.calls["outage"] == 5
    assert await context.bus.list_parked(context.queue) == []


async def test_retry_waits_for_the_growing_delay(backbone):
    context, harness = backbone
    harness.failures["slow"] = 2
    loop = asyncio.get_running_loop()
    started = loop.time()
    await publish_erased(context, "slow")

    async def done():
        assert await effect_count(context, "slow") == 1
    await eventually(done)
    # two failures wait 100 ms then 200 ms before the third try succeeds
    assert loop.time() - started >= 0.3


async def test_same_event_delivered_twice_has_one_effect(backbone):
    context, harness = backbone
    envelope = await publish_erased(context, "twice")
    await context.dispatcher.dispatch(envelope)  # a second delivery of the very same event

    async def settled():
        assert harness.calls["twice"] >= 1
        assert await effect_count(context, "twice") == 1
    await eventually(settled)
    await asyncio.sleep(0.3)
    assert await effect_count(context, "twice") == 1


async def test_relay_crash_after_publish_before_marking_sent_loses_nothing(backbone):
    context, harness = backbone
    await context.relay.stop()  # drive the relay by hand

    class Crash(Exception):
        pass

    def crash(_event_ids):
        raise Crash("relay died between the broker's confirm and marking the rows sent")

    async with context.uow() as uow:
        for i in range(5):
            uow.publish(LeadErasedV1(lead_id=f"crash-{i}"), org_id="org-a", subject_id=f"crash-{i}")
        await uow.commit()
    context.relay.after_publish_hook = crash
    with pytest.raises(Crash):
        await context.relay.publish_pending()
    context.relay.after_publish_hook = None
    unsent, _ = await context.relay.lag()
    assert unsent == 5  # the rows were published but are still unsent: they go out again
    assert await context.relay.publish_pending() == 5

    async def absorbed():
        for i in range(5):
            assert await effect_count(context, f"crash-{i}") == 1
    await eventually(absorbed)
    await asyncio.sleep(0.3)
    assert await effect_count(context) == 5
    assert sum(harness.calls.values()) >= 5  # redelivered duplicates reached the handler's inbox check


async def test_erasure_forgets_the_outbox_rows_about_a_subject(backbone):
    from salesflow_shared.outbox import forget_events_about

    context, harness = backbone
    await publish_erased(context, "erase_me")
    await publish_erased(context, "keep_me")

    async def published():
        assert (await context.relay.lag())[0] == 0
    await eventually(published)
    async with context.uow() as uow:
        assert await forget_events_about(uow.session, ["erase_me", "nobody"]) == 1
        await uow.commit()
    async with context.database.session() as session:
        payloads = (await session.execute(sa.select(outbox_table.c.payload))).scalars().all()
    assert len(payloads) == 1 and '"subject_id":"keep_me"' in payloads[0]


async def test_batched_consumer_handles_a_burst_in_few_transactions(database_url, amqp_url, bus_namespace):
    harness = BackboneHarness()
    harness.failures["bad-7"] = 10  # fails every time: parked, without holding back the rest of its batch
    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, service_name="test", migrate_on_start=False,
                                     consumer_prefetch=100)
    context = await start_context(harness_definition(settings, harness, batched=True))
    try:
        async with context.uow() as uow:
            for i in range(300):
                lead = "bad-7" if i == 7 else f"burst-{i}"
                uow.publish(LeadErasedV1(lead_id=lead), org_id="org-a", subject_id=lead)
            await uow.commit()

        async def all_but_one_handled():
            assert await effect_count(context) == 299
            assert len(await context.bus.list_parked(context.queue)) == 1
        await eventually(all_but_one_handled, timeout=30)
        handled = context.metrics.registry.get_sample_value(
            "salesflow_messages_handled_total", {"event_type": "LeadErased", "outcome": "ok"})
        assert handled >= 299
    finally:
        await context.stop()


async def test_batched_handlers_publish_as_if_consumed_alone(database_url, amqp_url, bus_namespace):
    """Events a handler publishes while a batch is handled are caused by the event it handled (causation,
    correlation, trace), and a duplicate in a batch is counted as one."""
    import json
    from pathlib import Path

    from salesflow_shared.app import ServiceDefinition
    from salesflow_shared.events import LeadDisqualifiedV1

    async def disqualify_after_erasure(data, envelope, uow):
        uow.publish(LeadDisqualifiedV1(lead_id=data.lead_id, reason="erased"), org_id=envelope.org_id,
                    subject_id=data.lead_id)

    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, service_name="test", migrate_on_start=False,
                                     consumer_prefetch=100)
    context = await start_context(ServiceDefinition(
        name="test", settings=settings, routers=[], migrations_path=Path("unused"),
        event_handlers={"LeadErased": [disqualify_after_erasure]}, consume_in_batches=True))
    try:
        await context.relay.stop()  # publish by hand: the burst then arrives as one batch
        async with context.uow() as uow:
            erased = [uow.publish(LeadErasedV1(lead_id=f"lead-{i}"), org_id="org-a", subject_id=f"lead-{i}")
                      for i in range(20)]
            await uow.commit()
        assert await context.relay.publish_pending() == 20
        await context.dispatcher.handle_batch([(erased[0].to_json(), {})])  # a duplicate of the first

        async def all_disqualified():
            async with context.database.session() as session:
                rows = (await session.execute(sa.select(outbox_table.c.event_type, outbox_table.c.payload,
                                                        outbox_table.c.headers))).all()
            follow_ups = [(json.loads(r.payload), r.headers) for r in rows if r.event_type == "LeadDisqualified"]
            assert len(follow_ups) == 20
            return follow_ups
        follow_ups = await eventually(all_disqualified, timeout=20)
        by_lead = {e.subject_id: e for e in erased}
        for payload, headers in follow_ups:
            cause = by_lead[payload["subject_id"]]
            assert payload["causation_id"] == str(cause.id)
            assert payload["correlation_id"] == cause.correlation_id
            assert headers.get("traceparent", "").startswith("00-"), headers
        sample = context.metrics.registry.get_sample_value
        assert sample("salesflow_messages_handled_total", {"event_type": "LeadErased", "outcome": "ok"}) == 20
        assert sample("salesflow_messages_handled_total", {"event_type": "LeadErased", "outcome": "duplicate"}) == 1
    finally:
        await context.stop()


async def test_published_outbox_rows_are_purged_after_the_retention_unpublished_never(backbone):
    from datetime import timedelta

    from salesflow_shared.events import utcnow

    context, harness = backbone
    await context.relay.stop()  # drive the relay by hand
    async with context.uow() as uow:
        old = [uow.publish(LeadErasedV1(lead_id=f"old-{i}"), org_id="org-a", subject_id=f"old-{i}") for i in range(3)]
        uow.publish(LeadErasedV1(lead_id="recent"), org_id="org-a", subject_id="recent")
        await uow.commit()
    assert await context.relay.publish_pending() == 4
    async with context.uow() as uow:
        uow.publish(LeadErasedV1(lead_id="stuck"), org_id="org-a", subject_id="stuck")  # never published
        await uow.commit()
    four_days_ago = utcnow() - timedelta(days=4)
    async with context.database.session() as session:
        await session.execute(sa.update(outbox_table).where(
            outbox_table.c.event_id.in_([str(e.id) for e in old])).values(published_at=four_days_ago))
        await session.execute(sa.update(outbox_table).where(outbox_table.c.published_at.is_(None)).values(
            created_at=four_days_ago))
        await session.commit()

    assert await context.relay.purge_published(timedelta(hours=72), batch=2) == 3  # in two batches
    async with context.database.session() as session:
        left = (await session.execute(sa.select(outbox_table.c.payload, outbox_table.c.published_at))).all()
    assert sorted(('"recent"' in r.payload, r.published_at is None) for r in left) == [(False, True), (True, False)]
    assert await context.relay.purge_published(timedelta(hours=72)) == 0


async def test_the_running_relay_purges_what_it_published_once_retained_long_enough(backbone):
    context, harness = backbone
    await context.relay.stop()
    context.relay.retention_s, context.relay.purge_every_s = 0.5, 0.2
    context.relay.start()
    await publish_erased(context, "short-lived")

    async def handled_and_purged():
        assert await effect_count(context, "short-lived") == 1
        async with context.database.session() as session:
            assert (await session.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one() == 0
    await eventually(handled_and_purged, timeout=10)


async def test_one_batch_in_flight_holds_later_deliveries_for_the_next_batch(database_url, amqp_url,
                                                                             bus_namespace):
    """With max_batches_in_flight=1, what arrives while a batch is in hand is not handled beside it: it waits,
    and is handled once that batch is done."""
    harness = BackboneHarness()
    harness.gates["slow"] = asyncio.Event()
    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, service_name="test", migrate_on_start=False,
                                     consumer_prefetch=50)
    context = await start_context(harness_definition(settings, harness, batched=True, max_batches_in_flight=1))
    try:
        await publish_erased(context, "slow")

        async def slow_in_hand():
            assert harness.calls["slow"] == 1
        await eventually(slow_in_hand)
        for i in range(10):
            await publish_erased(context, f"later-{i}")
        await asyncio.sleep(0.5)  # without the limit, these would be handled in batches of their own by now
        assert sum(harness.calls[f"later-{i}"] for i in range(10)) == 0
        assert await effect_count(context) == 0
        harness.gates["slow"].set()

        async def all_handled_once():
            assert await effect_count(context) == 11
            assert all(harness.calls[f"later-{i}"] == 1 for i in range(10)), harness.calls
        await eventually(all_handled_once, timeout=20)
    finally:
        harness.gates["slow"].set()  # a failed assertion must not leave the batch in hand at shutdown
        await context.stop()


async def test_a_batch_acked_at_once_never_acks_an_older_batch_still_in_hand(database_url, amqp_url,
                                                                             bus_namespace):
    """A handled batch is acked with one multiple-ack only when no older delivery is unsettled: when the
    connection drops while an older batch is still in hand, that batch comes back, and only that batch."""
    harness = BackboneHarness()
    harness.gates["slow"] = asyncio.Event()
    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, service_name="test", migrate_on_start=False,
                                     consumer_prefetch=50)
    context = await start_context(harness_definition(settings, harness, batched=True))
    try:
        await publish_erased(context, "slow")

        async def slow_in_hand():
            assert harness.calls["slow"] == 1
        await eventually(slow_in_hand)
        for i in range(10):  # later batches, handled and acked while "slow" is still in hand
            await publish_erased(context, f"quick-{i}")

        async def quick_done():
            assert await effect_count(context) == 10
        await eventually(quick_done)
        await asyncio.sleep(0.3)  # the quick batches' acks reach the broker
        # The older batch never commits: its handling stops and the connection drops (as in a crash, the
        # broker takes back what is unacked); the robust connection then reconnects and consumes again.
        for task in list(context.bus._in_flight):
            task.cancel()
        harness.gates["slow"].set()
        await context.bus._connection.transport.connection.close(ConnectionError("network dropped"))

        async def slow_redelivered():
            assert await effect_count(context, "slow") == 1
        await eventually(slow_redelivered, timeout=20)
        await asyncio.sleep(0.5)  # anything else that came back would be handled by now
        assert harness.calls["slow"] == 2
        assert all(harness.calls[f"quick-{i}"] == 1 for i in range(10)), harness.calls  # acked: not redelivered
        assert await effect_count(context) == 11
    finally:
        await context.stop()


async def test_statements_are_counted_by_what_they_were_sent_for(backbone):
    """The statements counter's path: a request's (here the test's own unit of work), a delivery's inbox and
    handler, the relay's (bench/cpu_per_lead.py reports statements per delivery on the hot paths from it)."""
    context, _ = backbone

    def sent(path: str) -> float:
        return context.metrics.registry.get_sample_value("salesflow_db_statements_total", {"path": path}) or 0

    before = {path: sent(path) for path in ("request", "consumer", "relay")}
    await publish_erased(context, "lead-counted")  # outside any marked path: a request's

    async def counted():
        assert await effect_count(context, "lead-counted") == 1
        assert sent("request") - before["request"] >= 1  # the event's outbox row
        assert sent("consumer") - before["consumer"] >= 2  # its inbox row and the handler's insert
        assert sent("relay") - before["relay"] >= 1  # the mark of the row it published (or a sweep)
    await eventually(counted, timeout=15)
