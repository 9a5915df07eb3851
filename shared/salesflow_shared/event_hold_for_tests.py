"""A test-only hook that holds chosen events back from a chosen consuming service, so cross-service tests can
force the unlucky orders the real system may produce (a task's reminder before its rep's directory entry, a
lead's assignment before its details) through the running system, in both run modes.

It is off unless `SALESFLOW_TEST_EVENT_HOLD_DIR` is set, and the settings refuse that variable outside the test
environment (`SALESFLOW_ENVIRONMENT=test`), so production can never enable it.

A hold is a file `<dir>/<org_id>.json` holding `{"<service name>": ["<event type>", ...]}`. While it lists an
event's type for the consuming service, the dispatcher answers that event with TransientFailure: the bus
postpones it and brings it back (the attempt does not count towards parking it), as during a database outage.
Deleting the file releases the held events, which then arrive after the ones that were let through.
"""
from __future__ import annotations

import json
from pathlib import Path

from .bus import TransientFailure
from .events import Envelope


class EventHoldForTests:
    def __init__(self, directory: Path, service: str) -> None:
        self.directory = directory
        self.service = service

    def held_types(self, org_id: str) -> set[str]:
        """The event types held back from this service for the org (none when no hold file exists)."""
        if not org_id or "/" in org_id or org_id.startswith("."):
            return set()
        try:
            holds = json.loads((self.directory / f"{org_id}.json").read_text())
        except FileNotFoundError:
            return set()  # no hold (tests write the file whole with a rename, so it is never half-written)
        return set(holds.get(self.service, ()))

    def check(self, envelope: Envelope) -> None:
        """Raise TransientFailure when the event is held back from this service."""
        if envelope.type in self.held_types(envelope.org_id):
            raise TransientFailure(f"{envelope.type} held back by the test event hold")
