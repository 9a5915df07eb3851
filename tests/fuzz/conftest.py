"""The system the API fuzzing and convention checks run against: each service a real process on PostgreSQL and
RabbitMQ, started once for the whole folder."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from system_harness import RunningSystem


@pytest.fixture(scope="package")
def system(tmp_path_factory, postgres_server_url, amqp_url) -> Iterator[RunningSystem]:
    running = RunningSystem(tmp_path_factory.mktemp("fuzz"))
    running.start_all()
    yield running
    running.stop_all()
