"""The running system shared by the journeys of tests/e2e, in each run mode: `world` is the full mode (six
service processes on PostgreSQL and RabbitMQ), `embedded_world` the embedded mode (one process, SQLite, the
in-process bus); a journey that takes `any_world` runs against both. Each journey works in its own
organization, so journeys sharing a system do not see each other."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_testkit import World, running_world


@pytest.fixture(scope="session")
def world(tmp_path_factory, postgres_server_url, amqp_url) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("e2e")) as running:
        yield running


@pytest.fixture(scope="session")
def embedded_world(tmp_path_factory) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("e2e-embedded"), mode="embedded") as running:
        yield running


@pytest.fixture(params=["full", "embedded"])
def any_world(request) -> World:
    return request.getfixturevalue("world" if request.param == "full" else "embedded_world")
