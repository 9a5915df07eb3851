from collections.abc import AsyncIterator

import pytest
from pipeline_testkit import MONDAY_9AM, Pipe, build_app

from salesflow_shared.bus import RabbitBus
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import running_app


@pytest.fixture
async def pipe(database_url: str, amqp_url: str, bus_namespace: str) -> AsyncIterator[Pipe]:
    clock = ManualClock(MONDAY_9AM)
    app = build_app(database_url, amqp_url, bus_namespace, clock)
    feeder = RabbitBus(amqp_url, namespace=bus_namespace, client_name="test-feeder")
    await feeder.start()
    try:
        async with running_app(app) as client:
            yield Pipe(client=client, context=app.state.context, clock=clock, feeder=feeder)
    finally:
        await feeder.close()
