"""The test-only event hold: off by default, refused outside the test environment, and holding exactly the
event types its file names for the service it names, in that org, until the file is gone."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from salesflow_shared.bus import TransientFailure
from salesflow_shared.event_hold_for_tests import EventHoldForTests
from salesflow_shared.events import Envelope
from salesflow_shared.settings import ServiceSettings


def test_the_hold_is_off_by_default_and_refused_outside_tests(tmp_path):
    assert ServiceSettings().test_event_hold_dir is None
    assert ServiceSettings(environment="test", test_event_hold_dir=tmp_path).test_event_hold_dir == tmp_path
    for environment in ("development", "production"):
        with pytest.raises(ValidationError, match="SALESFLOW_TEST_EVENT_HOLD_DIR"):
            ServiceSettings(environment=environment, test_event_hold_dir=tmp_path, jwt_secret="x" * 40,
                            database_url="postgresql://db.invalid/x", amqp_url="amqp://mq.invalid/")


def test_the_env_variable_is_refused_in_production(tmp_path, monkeypatch):
    monkeypatch.setenv("SALESFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("SALESFLOW_TEST_EVENT_HOLD_DIR", str(tmp_path))
    with pytest.raises(ValidationError, match="refused unless SALESFLOW_ENVIRONMENT=test"):
        ServiceSettings(jwt_secret="x" * 40, database_url="postgresql://db.invalid/x", amqp_url="amqp://mq.invalid/")


def envelope(event_type: str, org_id: str) -> Envelope:
    return Envelope.model_validate({
        "id": "6f1c2a8e-8a55-4c8e-9a59-0d6f4f6e2b11", "type": event_type, "version": 1, "org_id": org_id,
        "occurred_at": "2026-01-05T10:00:00Z", "producer": "assignment-service", "subject_id": "rae",
        "subject_version": 1, "data": {}})


def test_only_the_named_types_for_the_named_service_and_org_are_held_until_released(tmp_path):
    (tmp_path / "org-a.json").write_text(json.dumps({"notification-service": ["RepCreated"]}))
    notification = EventHoldForTests(tmp_path, "notification-service")
    with pytest.raises(TransientFailure, match="RepCreated held back"):
        notification.check(envelope("RepCreated", "org-a"))
    notification.check(envelope("TaskCreated", "org-a"))  # another type passes
    notification.check(envelope("RepCreated", "org-b"))  # another org passes
    EventHoldForTests(tmp_path, "metrics-service").check(envelope("RepCreated", "org-a"))  # another service too
    (tmp_path / "org-a.json").unlink()
    notification.check(envelope("RepCreated", "org-a"))  # released
