"""The projector in its own process (SALESFLOW_PROJECTOR=only), as deployed beside consumers that only log
(SALESFLOW_PROJECTOR=separate): events go through RabbitMQ into the log, only the projector process applies
them, and the reports equal those of the single-process service."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aio_pika
import sqlalchemy as sa
from metrics_testkit import NOW, all_reports, build_history, delivery_order, feed, metrics_settings
from system_harness import free_port, wait_ready

from metrics_service.adapters.orm import event_log
from metrics_service.entrypoints.http import create_app
from metrics_service.service_layer.projector import pending
from salesflow_shared.bus import OutgoingMessage
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import dies_with_test_run, eventually, running_app


def start_projector(database_url: str, amqp_url: str, namespace: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SALESFLOW_ENVIRONMENT": "test", "SALESFLOW_DATABASE_URL": database_url,
           "SALESFLOW_AMQP_URL": amqp_url, "SALESFLOW_BUS_NAMESPACE": namespace, "SALESFLOW_LOG_LEVEL": "WARNING",
           "SALESFLOW_PROJECTOR": "only", "SALESFLOW_MIGRATE_ON_START": "false"}
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory",
                             "metrics_service.entrypoints.http:create_app", "--port", str(port),
                             "--log-level", "warning"], env=env, preexec_fn=dies_with_test_run)


async def consumers_of(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count
    finally:
        await connection.close()


async def test_a_projector_process_applies_what_logging_only_consumers_logged(
        metrics_app, make_database_url, amqp_url, bus_namespace):
    events = build_history().events
    reference_app, reference_client = metrics_app
    await feed(reference_app, delivery_order(events, seed=1))
    expected = await all_reports(reference_client)

    database_url = await make_database_url("projector")
    settings = metrics_settings(database_url, amqp_url, bus_namespace).model_copy(update={"projector": "separate"})
    consumer = create_app(settings, clock=ManualClock(NOW))
    async with running_app(consumer) as client:
        context = consumer.state.context
        for envelope in delivery_order(events, seed=3):  # shuffled, with duplicates
            await context.bus.publish(OutgoingMessage(str(envelope.id), envelope.type, envelope.to_json()))
        unique = len({e.id for e in events})

        async def all_logged() -> None:
            async with context.database.session() as session:
                logged = (await session.execute(sa.select(sa.func.count()).select_from(event_log))).scalar_one()
            assert logged == unique
        await eventually(all_logged, timeout=30)
        await asyncio.sleep(0.5)
        assert await pending(context.database) == unique  # nothing projects in a "separate" process

        port = free_port()
        projector = start_projector(database_url, amqp_url, bus_namespace, port)
        try:
            await asyncio.to_thread(wait_ready, projector, f"http://127.0.0.1:{port}", 60, "projector")
            # The projector process consumes nothing: the queue's only consumer is the service's.
            assert await consumers_of(amqp_url, f"{bus_namespace}metrics-service.events") == 1

            async def all_projected() -> None:
                assert await pending(context.database) == 0
            await eventually(all_projected, timeout=30)
        finally:
            projector.terminate()
            projector.wait(timeout=30)
        assert await all_reports(client) == expected
