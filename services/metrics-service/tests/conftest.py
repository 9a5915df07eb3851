"""Fixtures of metrics-service's tests: the app on a fresh PostgreSQL database with a fixed clock."""
from __future__ import annotations

import pytest
from metrics_testkit import NOW, metrics_settings

from metrics_service.entrypoints.http import create_app
from salesflow_shared.testing import running_app


@pytest.fixture
async def metrics_app(database_url):
    """(app, client) with the in-process bus; events are fed through the dispatcher (the consumer path)."""
    app = create_app(metrics_settings(database_url), clock=lambda: NOW)
    async with running_app(app) as client:
        yield app, client
