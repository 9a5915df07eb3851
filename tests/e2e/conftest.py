"""One running system (six service processes + local SMTP, fake Mailchimp, fake enrichment provider) shared
by the journeys of tests/e2e; each journey works in its own organization, so they do not see each other."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e_testkit import World, running_world


@pytest.fixture(scope="session")
def world(tmp_path_factory, postgres_server_url, amqp_url) -> Iterator[World]:
    with running_world(tmp_path_factory.mktemp("e2e")) as running:
        yield running
