"""The embedded assignment-service each service-layer test module shares: SQLite, the in-process bus, no workers,
a clock at Monday 2026-03-02 10:00 UTC, and the events other services hear about routing, assignment and the
rep directory collected as they reach the bus."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from assignment_service.bootstrap import build_definition
from assignment_service.config import Settings
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import EmbeddedService, embedded_service, embedded_settings

MONDAY_10AM = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
OBSERVED = ("LeadRouted", "LeadAssigned", "RepDeactivated")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedService]:
    settings = embedded_settings(Settings, tmp_path_factory.mktemp("embedded") / "assignment-service.db")
    async with embedded_service(build_definition(settings), ManualClock(MONDAY_10AM), observe=OBSERVED) as service:
        yield service
