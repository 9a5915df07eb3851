from collections.abc import AsyncIterator

import pytest
from incentive_testkit import NOW, Incentives, build_app

from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import service_under_test


@pytest.fixture
async def incentives(database_url: str, amqp_url: str, bus_namespace: str) -> AsyncIterator[Incentives]:
    clock = ManualClock(NOW)
    app = build_app(database_url, amqp_url, bus_namespace, clock)
    async with service_under_test(Incentives, app, clock, amqp_url, bus_namespace) as running:
        yield running
