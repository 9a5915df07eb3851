"""RabbitMQ restarted while events flow: every committed event is still delivered, each with one effect.

The test restarts the real broker's application on this machine (`rabbitmqctl stop_app` / `start_app`),
which closes every connection and channel exactly as a broker restart does, while the node's data (durable
quorum queues, persistent messages) survives as it would.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
from backbone_support import BackboneHarness, effect_count, harness_definition, publish_erased, start_context

from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, service_test_settings

pytestmark = pytest.mark.broker_restart


def _rabbitmqctl(*args: str) -> None:
    executable = shutil.which("rabbitmqctl")
    assert executable, "rabbitmqctl is needed to restart the local broker"
    subprocess.run([executable, "-q", *args], check=True, timeout=120, capture_output=True)


async def test_broker_restart_while_events_flow_loses_nothing(database_url, amqp_url, bus_namespace):
    harness = BackboneHarness()
    settings = service_test_settings(ServiceSettings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=bus_namespace, service_name="test", migrate_on_start=False)
    context = await start_context(harness_definition(settings, harness))
    committed: list[str] = []
    try:
        async def produce(count: int) -> None:
            for i in range(count):
                await publish_erased(context, f"flow-{i}")  # commits even while the broker is down
                committed.append(f"flow-{i}")
                await asyncio.sleep(0.01)

        producer = asyncio.create_task(produce(300))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        try:
            await asyncio.sleep(1.0)
        finally:
            await asyncio.to_thread(_rabbitmqctl, "start_app")
            await asyncio.to_thread(_rabbitmqctl, "await_startup")
        await producer

        async def all_delivered() -> None:
            assert await effect_count(context) == len(committed)
        await eventually(all_delivered, timeout=60, interval=0.5)
        for lead_id in committed:
            assert await effect_count(context, lead_id) == 1
        unsent, _ = await context.relay.lag()
        assert unsent == 0
        # The outage was really felt: publishing failed while the broker was away, and was retried.
        failures = context.metrics.registry.get_sample_value("salesflow_outbox_publish_failures_total")
        assert failures and failures > 0
    finally:
        await context.stop()
