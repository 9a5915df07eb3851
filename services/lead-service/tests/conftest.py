"""Fixtures for lead-service's integration tests: the real app on PostgreSQL + RabbitMQ.

`lead_app` is one app per test module (its own database and bus namespace, started once: starting and
tearing down a broker namespace and a database costs seconds); each test gets fresh org ids, so tests never
see each other's data. Modules using it run in a module-scoped event loop (`pytestmark` there).
"""
from __future__ import annotations

import pytest_asyncio
from lead_testkit import shared_app, use_fresh_orgs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_lead_app(postgres_server_url, amqp_url):
    async with shared_app(postgres_server_url, amqp_url) as app:
        yield app


@pytest_asyncio.fixture(loop_scope="module")
async def lead_app(module_lead_app):
    use_fresh_orgs()
    yield module_lead_app
