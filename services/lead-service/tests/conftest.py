"""Fixtures for lead-service's integration tests: the real app on PostgreSQL + RabbitMQ."""
from __future__ import annotations

import pytest

from lead_testkit import LeadApp, start_lead_app


@pytest.fixture
async def lead_app(database_url, amqp_url, bus_namespace):
    async with start_lead_app(database_url, amqp_url, bus_namespace) as app:
        yield app
