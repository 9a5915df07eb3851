"""Test support every service's tests use (loaded as a pytest plugin).

Integration tests run against the real PostgreSQL and RabbitMQ on the machine. A server that cannot be
reached fails the test with a clear message; it never skips. Each test gets its own database and its own
bus namespace (exchange and queue prefix), so tests never see each other's rows or messages.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import pytest

from .auth import Role, mint_token
from .settings import DEV_JWT_SECRET

POSTGRES_URL = os.environ.get("SALESFLOW_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("SALESFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

T = TypeVar("T")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    if not _reachable(POSTGRES_URL, 5432):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: start it (see README, Testing)", pytrace=False)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not _reachable(AMQP_URL, 5672):
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL}: start it (see README, Testing)", pytrace=False)
    return AMQP_URL


@pytest.fixture
async def make_database_url(postgres_server_url: str) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Create fresh, empty PostgreSQL databases for this test; they are dropped afterwards."""
    from .db import drop_postgres_database, ensure_postgres_database

    created: list[str] = []

    async def _make(label: str = "db") -> str:
        name = f"sft_{label.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
        url = f"{postgres_server_url.rstrip('/')}/{name}"
        await ensure_postgres_database(url)
        created.append(url)
        return url

    yield _make
    for url in created:
        try:
            await drop_postgres_database(url)
        except Exception:  # a leftover test database is harmless; never mask the test's own result
            pass


@pytest.fixture
async def database_url(make_database_url: Callable[[str], Awaitable[str]]) -> str:
    return await make_database_url("db")


@pytest.fixture
async def bus_namespace(amqp_url: str) -> AsyncIterator[str]:
    """A unique exchange/queue prefix; every queue and the exchange under it are deleted afterwards."""
    namespace = f"t{uuid.uuid4().hex[:10]}."
    yield namespace
    await delete_namespace(amqp_url, namespace)


# Retry queues are named by their delay; these cover the delays tests and the e2e harness use.
RETRY_DELAYS_TO_CLEAN = (50, 100, 200, 250, 400, 500, 1000, 2000, 3000, 5000, 30000)


async def delete_namespace(amqp_url: str, namespace: str) -> None:
    import aio_pika

    from .runner import SERVICES

    connection = await aio_pika.connect(amqp_url)
    try:
        names = [f"{namespace}{s.name}.events" for s in SERVICES] + [f"{namespace}test.events"]
        for base in names:
            for suffix in ("", ".dlq", *(f".retry.{d}ms" for d in RETRY_DELAYS_TO_CLEAN)):
                channel = await connection.channel()
                try:
                    await channel.queue_delete(base + suffix)
                except Exception:
                    pass
                finally:
                    if not channel.is_closed:
                        await channel.close()
        channel = await connection.channel()
        try:
            await channel.exchange_delete(f"{namespace}salesflow.events")
        except Exception:
            pass
    finally:
        await connection.close()


def service_test_settings(settings_cls: type[T], *, database_url: str, amqp_url: str | None = None,
                          namespace: str = "", **overrides: Any) -> T:
    """Settings for a service under test: fast retries and polling, real servers."""
    values: dict[str, Any] = {
        "environment": "test", "database_url": database_url, "amqp_url": amqp_url or "",
        "bus_namespace": namespace, "retry_delays_ms": [100, 200], "outbox_poll_interval_s": 0.2,
        "jwt_secret": DEV_JWT_SECRET, "log_level": "WARNING",
    }
    values.update(overrides)
    return settings_cls(**values)


@asynccontextmanager
async def running_app(app: Any, base_url: str = "http://testserver") -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, bus, relay, consumers) and give an HTTP client to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def make_token(org: str, role: Role = "admin", sub: str = "user-1", secret: str = DEV_JWT_SECRET) -> str:
    return mint_token(secret, sub=sub, org=org, role=role)


def auth_headers(org: str, role: Role = "admin", sub: str = "user-1", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(org, role, sub)}", **extra}


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns without raising an AssertionError, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)
