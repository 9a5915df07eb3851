from collections.abc import AsyncIterator

import pytest
from pipeline_testkit import MONDAY_9AM, Pipe, build_app

from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import service_under_test


@pytest.fixture
async def pipe(database_url: str, amqp_url: str, bus_namespace: str) -> AsyncIterator[Pipe]:
    clock = ManualClock(MONDAY_9AM)
    app = build_app(database_url, amqp_url, bus_namespace, clock)
    async with service_under_test(Pipe, app, clock, amqp_url, bus_namespace) as running:
        yield running
