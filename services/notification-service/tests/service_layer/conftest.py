"""The embedded notification-service the service-layer tests share: SQLite, the in-process bus, no workers
(the tests run their ticks), a clock at Monday 2026-01-05 10:00 UTC and a real local SMTP server (smtp_sink)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from notification_service.bootstrap import build_definition
from notification_service.config import Settings
from salesflow_shared.clock import ManualClock
from salesflow_shared.testing import EmbeddedService, SmtpSink, embedded_service, embedded_settings

MONDAY_10AM = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # 05:00 in New York (EST, UTC-5)


@pytest.fixture
async def embedded(tmp_path, smtp_sink: SmtpSink) -> AsyncIterator[EmbeddedService]:
    settings = embedded_settings(Settings, tmp_path / "notification-service.db", smtp_host="127.0.0.1",
                                 smtp_port=smtp_sink.port, smtp_timeout_s=5, delivery_retry_base_s=60,
                                 public_base_url="https://crm.example.com")
    clock = ManualClock(MONDAY_10AM)
    async with embedded_service(build_definition(settings, clock), clock) as service:
        yield service
