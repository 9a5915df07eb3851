"""metrics-service ingest rate through RabbitMQ: events/s from a full queue into the event log.

N events are published to the service's queue while it is stopped; then the service starts and the time
until all N are logged is measured. Baseline in the same run: the same service consuming one message per
transaction (consume_in_batches off), against the default batched consumer.
Run: .venv/bin/python bench/metrics_ingest.py [--events 20000]
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import replace
from decimal import Decimal

import aio_pika
import asyncpg

from metrics_service.bootstrap import build_definition
from metrics_service.config import Settings
from salesflow_shared.app import create_service_app
from salesflow_shared.db import drop_postgres_database, ensure_postgres_database
from salesflow_shared.events import ActivityLoggedV1, LeadCreatedV1, LeadSnapshot, make_event
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, eventually


def events(n: int, org: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        lead = f"lead-{i // 2}"
        if i % 2 == 0:
            e = make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id=lead, value=Decimal("1000"), currency="EUR",
                                                           source="web_form")), org_id=org, subject_id=lead)
        else:
            e = make_event(ActivityLoggedV1(activity_id=str(uuid.uuid4()), lead_id=lead, kind="call",
                                            occurred_at="2026-11-01T10:00:00Z", rep_id="rep-1"),
                           org_id=org, subject_id=lead)
        out.append((e.type, e.to_json()))
    return out


async def measure(n: int, batched: bool) -> float:
    database_url = f"{POSTGRES_URL}/bench_ingest_{uuid.uuid4().hex[:8]}"
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    await ensure_postgres_database(database_url)
    settings = Settings(environment="test", database_url=database_url, amqp_url=AMQP_URL, bus_namespace=namespace,
                        log_level="WARNING", forecast_snapshot_interval_s=0, projector_idle_interval_s=3600)
    definition = replace(build_definition(settings), consume_in_batches=batched)
    try:
        app = create_service_app(definition)
        async with app.router.lifespan_context(app):
            pass  # declares the queue and migrates; stopped while the backlog is published
        connection = await aio_pika.connect(AMQP_URL)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(f"{namespace}salesflow.events", aio_pika.ExchangeType.TOPIC,
                                                  durable=True)
        bodies = events(n, "bench-org")
        for i in range(0, n, 500):
            await asyncio.gather(*[exchange.publish(aio_pika.Message(body, delivery_mode=2), routing_key=kind)
                                   for kind, body in bodies[i:i + 500]])
        await connection.close()
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        app = create_service_app(replace(build_definition(settings), consume_in_batches=batched))
        started = time.perf_counter()
        async with app.router.lifespan_context(app):
            async def all_logged() -> None:
                assert await conn.fetchval("SELECT count(*) FROM event_log") >= n

            await eventually(all_logged, timeout=3600, interval=0.05)
            elapsed = time.perf_counter() - started
        await conn.close()
        return n / elapsed
    finally:
        await delete_namespace(AMQP_URL, namespace)
        await drop_postgres_database(database_url)


async def main(n: int) -> None:
    baseline = await measure(n, batched=False)
    batched = await measure(n, batched=True)
    print(f"events: {n} (LeadCreated and ActivityLogged), queue full before the service starts")
    print(f"baseline, one message per transaction: {baseline:,.0f} events/s")
    print(f"batched consumer (prefetch 200):       {batched:,.0f} events/s   ratio {batched / baseline:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    asyncio.run(main(parser.parse_args().events))
