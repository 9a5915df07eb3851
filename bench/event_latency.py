"""Intake-to-consumer latency of one event, and the outbox relay's publish rate, through the real backbone.

Latency: an event is committed to the outbox (one transaction, as a request would), the relay is woken by the
commit, publishes with confirms to RabbitMQ, the consumer's handler runs in its transaction with the inbox.
Measured one event at a time (no queueing), N times. Baseline in the same run: a bare aio-pika publish with
confirm to a queue and a consumer receiving it (no database at all).
Relay rate: N events committed first, then the time for the relay to publish all of them with confirms,
against a bare publish-with-confirms loop of the same size.
With `--rate R`: also commits arriving at random (Poisson, R per second on average, a fixed seed), each its own
transaction as concurrent requests make them, so that some land while the relay publishes an earlier one:
commit → handler latency percentiles under that stream.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared" / "tests"))

from backbone_support import BackboneHarness, harness_definition, start_context  # noqa: E402

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database  # noqa: E402
from salesflow_shared.events import LeadErasedV1  # noqa: E402
from salesflow_shared.settings import ServiceSettings  # noqa: E402
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, eventually  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def baseline_latency(n: int) -> list[float]:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(f"bench-{uuid.uuid4().hex[:8]}", exclusive=True)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()
        arrived.put_nowait(time.perf_counter())

    await queue.consume(on_message)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await channel.default_exchange.publish(aio_pika.Message(b"{}", delivery_mode=2), routing_key=queue.name)
        samples.append(await arrived.get() - started)
    await connection.close()
    return samples


async def baseline_publish_rate(n: int) -> float:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(f"bench-{uuid.uuid4().hex[:8]}", exclusive=True)
    started = time.perf_counter()
    for batch in range(0, n, 200):
        await asyncio.gather(*(channel.default_exchange.publish(aio_pika.Message(b"{}", delivery_mode=2),
                                                                routing_key=queue.name)
                               for _ in range(min(200, n - batch))))
    rate = n / (time.perf_counter() - started)
    await connection.close()
    return rate


async def _arrived(arrivals: dict[str, float], lead_id: str) -> None:
    assert lead_id in arrivals


async def stream_latency(context, arrivals: dict[str, float], n: int, rate: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Commits arriving at random at `rate` per second on average (each not waiting for the others)."""
    draw = random.Random(21)
    started_at: dict[str, float] = {}

    async def commit(lead_id: str) -> None:
        started_at[lead_id] = time.perf_counter()
        async with context.uow() as uow:
            uow.publish(LeadErasedV1(lead_id=lead_id), org_id="bench", subject_id=lead_id)
            await uow.commit()

    commits = []
    due = time.perf_counter()
    for i in range(n):
        due += draw.expovariate(rate)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        commits.append(asyncio.create_task(commit(f"s{i}")))
    await asyncio.gather(*commits)

    async def all_arrived() -> None:
        assert all(lead_id in arrivals for lead_id in started_at)
    await eventually(all_arrived, timeout=120)
    return [arrivals[lead_id] - began for lead_id, began in started_at.items()]


async def main(n: int, rate: float) -> None:
    database_url = f"{POSTGRES_URL}/bench_latency_{uuid.uuid4().hex[:8]}"
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    await ensure_postgres_database(database_url)
    harness = BackboneHarness()
    settings = ServiceSettings(database_url=database_url, amqp_url=AMQP_URL, bus_namespace=namespace,
                               service_name="test", migrate_on_start=False, log_level="WARNING",
                               outbox_poll_interval_s=5.0)
    context = await start_context(harness_definition(settings, harness))
    arrivals: dict[str, float] = {}
    original = harness.on_lead_erased

    async def timed(data, envelope, uow):  # type: ignore[no-untyped-def]
        await original(data, envelope, uow)
        arrivals[data.lead_id] = time.perf_counter()
    harness.on_lead_erased = timed  # type: ignore[method-assign]
    try:
        for i in range(20):  # warm-up
            async with context.uow() as uow:
                uow.publish(LeadErasedV1(lead_id=f"w{i}"), org_id="bench", subject_id=f"w{i}")
                await uow.commit()
        await asyncio.sleep(1)
        samples = []
        for i in range(n):
            lead_id = f"l{i}"
            started = time.perf_counter()
            async with context.uow() as uow:
                uow.publish(LeadErasedV1(lead_id=lead_id), org_id="bench", subject_id=lead_id)
                await uow.commit()
            # the handler stamps the arrival, so how soon this poll sees it does not count in the sample
            await eventually(functools.partial(_arrived, arrivals, lead_id), timeout=60, interval=0.0005)
            samples.append(arrivals[lead_id] - started)
        base = await baseline_latency(n)
        stream = await stream_latency(context, arrivals, n, rate) if rate else []

        # Relay rate on its own: stop consuming so the handler's transactions do not share the loop,
        # and bind a plain queue so the events are routable.
        await context.bus.stop_consuming()
        await context.relay.stop()
        sink = await aio_pika.connect(AMQP_URL)
        sink_channel = await sink.channel()
        exchange = await sink_channel.declare_exchange(f"{namespace}salesflow.events", "topic", durable=True)
        sink_queue = await sink_channel.declare_queue(f"{namespace}sink", exclusive=True)
        await sink_queue.bind(exchange, "LeadErased")
        async with context.uow() as uow:
            for i in range(n * 3):
                uow.publish(LeadErasedV1(lead_id=f"r{i}"), org_id="bench", subject_id=f"r{i}")
            await uow.commit()
        started = time.perf_counter()
        published = 0
        while published < n * 3:
            published += await context.relay.publish_pending()
        relay_rate = n * 3 / (time.perf_counter() - started)
        await sink.close()
        bare_rate = await baseline_publish_rate(n * 3)
    finally:
        await context.stop()
        await delete_namespace(AMQP_URL, namespace)
        await drop_postgres_database(database_url)

    ms = lambda v: f"{v * 1000:.2f} ms"  # noqa: E731
    print(f"events measured one at a time: {n}")
    print(f"outbox → relay → RabbitMQ → consumer+inbox: median {ms(statistics.median(samples))}, "
          f"p99 {ms(pct(samples, 0.99))}")
    print(f"baseline bare aio-pika publish→consume:     median {ms(statistics.median(base))}, "
          f"p99 {ms(pct(base, 0.99))}")
    print(f"latency ratio (median, backbone / baseline): {statistics.median(samples) / statistics.median(base):.2f}x")
    if stream:
        print(f"commits arriving at random, {rate:g}/s on average: commit → consumer+inbox median "
              f"{ms(statistics.median(stream))}, p95 {ms(pct(stream, 0.95))}, p99 {ms(pct(stream, 0.99))}, "
              f"max {ms(max(stream))}")
    print(f"relay publish rate with confirms: {relay_rate:,.0f} events/s over {n * 3} events "
          f"(baseline bare publish loop: {bare_rate:,.0f}/s, ratio {relay_rate / bare_rate:.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="also measure commits arriving at random at this rate per second (0: not)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rate))
