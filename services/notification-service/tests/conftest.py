"""Fixtures for notification-service's tests: a running service on the real PostgreSQL and RabbitMQ, a real
local SMTP server (aiosmtpd), a fake Mailchimp API (+ webhook receiver) and a clock the test moves."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from notification_fakes import FakeMailchimp
from notification_testkit import Harness

from notification_service.config import Settings
from notification_service.entrypoints.http import create_app
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import SmtpSink, running_app, service_test_settings

START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
async def fake_mailchimp() -> AsyncIterator[FakeMailchimp]:
    fake = FakeMailchimp()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
def shared_database_url(postgres_server_url: str) -> Iterator[str]:
    """One database for the service's integration tests: each test works in an org of its own (creating and
    dropping a database per test costs seconds on a loaded machine)."""
    from salesflow_shared.db import drop_postgres_database, ensure_postgres_database

    url = f"{postgres_server_url.rstrip('/')}/sft_notification_{uuid.uuid4().hex[:10]}"
    asyncio.run(ensure_postgres_database(url))
    yield url
    try:
        asyncio.run(drop_postgres_database(url))
    except Exception:  # noqa: BLE001 - a leftover test database is harmless; never mask the tests' own result
        pass


def harness_settings(database_url: str, amqp_url: str, bus_namespace: str, smtp_sink: SmtpSink,
                     fake_mailchimp: FakeMailchimp, **overrides) -> Settings:
    return service_test_settings(
        Settings, database_url=database_url, amqp_url=amqp_url, namespace=bus_namespace,
        smtp_host="127.0.0.1", smtp_port=smtp_sink.port, smtp_timeout_s=5,
        mailchimp_base_url=fake_mailchimp.base_url, mailchimp_backoff_s=0.01, mailchimp_max_retries=3,
        scheduler_poll_interval_s=0.05, delivery_retry_base_s=60, public_base_url="https://crm.example.com",
        # PostgreSQL is shared with everyone's tests: a small pool per app (the workers wait for a connection).
        db_pool_size=3, worker_concurrency=10, **overrides)


@asynccontextmanager
async def running_harness(settings: Settings, smtp_sink: SmtpSink,
                          fake_mailchimp: FakeMailchimp) -> AsyncIterator[Harness]:
    clock = ManualClock(START)
    app = create_app(settings, clock=clock)
    async with running_app(app) as client:
        harness = Harness(app, client, clock, smtp_sink, fake_mailchimp, org=f"org-{uuid.uuid4().hex[:8]}")
        yield harness
        await harness.retire()


@pytest.fixture
async def harness(shared_database_url, amqp_url, bus_namespace, smtp_sink, fake_mailchimp) -> AsyncIterator[Harness]:
    settings = harness_settings(shared_database_url, amqp_url, bus_namespace, smtp_sink, fake_mailchimp)
    async with running_harness(settings, smtp_sink, fake_mailchimp) as harness:
        yield harness


@pytest.fixture
async def production_like_harness(shared_database_url, amqp_url, bus_namespace, smtp_sink,
                                  fake_mailchimp) -> AsyncIterator[Harness]:
    """Webhooks restricted to public addresses, as in production (the fakes on 127.0.0.1 are off limits)."""
    settings = harness_settings(shared_database_url, amqp_url, bus_namespace, smtp_sink, fake_mailchimp,
                                webhook_allow_private_networks=False)
    async with running_harness(settings, smtp_sink, fake_mailchimp) as harness:
        yield harness


@pytest.fixture
async def waiting_harness(shared_database_url, amqp_url, bus_namespace, smtp_sink,
                          fake_mailchimp) -> AsyncIterator[Harness]:
    """Retries slow enough for a test to publish a missing event between an event's first attempt and its retry
    (three retries, then the event is parked)."""
    settings = harness_settings(shared_database_url, amqp_url, bus_namespace, smtp_sink, fake_mailchimp,
                                retry_delays_ms=[2000, 2000, 2000])
    async with running_harness(settings, smtp_sink, fake_mailchimp) as harness:
        yield harness
