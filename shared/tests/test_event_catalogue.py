"""The envelope and the event catalogue: typed round trips, versioning, and the exported schemas."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from salesflow_shared.bus import PermanentFailure
from salesflow_shared.consumer import EventDispatcher
from salesflow_shared.events import (
    EVENT_TYPES,
    Envelope,
    LeadCreatedV1,
    LeadSnapshot,
    LeadWonV1,
    make_event,
    parse_data,
)
from salesflow_shared.events.schemas_export import export, render_schemas
from salesflow_shared.logging import correlation_id_var

DESIGN_EVENTS = {"LeadCreated", "LeadUpdated", "LeadDisqualified", "LeadErased", "ActivityLogged", "LeadRouted",
                 "LeadAssigned", "StageAdvanced", "TaskCreated", "TaskCompleted", "TaskSkipped", "TaskOverdue",
                 "LeadWon", "LeadLost", "LeadReopened", "EmailSent", "EmailFailed", "ContactSynced",
                 "RepNotified", "ForecastSnapshotted"}
# Events added after the first event table was written (each a contract addition reported to the lead).
ADDED_EVENTS = {
    "QuotaReached",  # metrics-service: a quota reached, for the rep's milestone notification
    "TaskReassigned",  # pipeline-service: a task's new assignee, for its reminders and notification
    # assignment-service: the rep directory, so other services hold a copy instead of guessing addresses
    "RepCreated", "RepUpdated", "RepDeactivated",
    # metrics-service: quotas and the org's currency model, for incentive-service's plans
    "QuotaSet", "QuotaRemoved", "ReportingCurrencySet", "ExchangeRateSet",
    # incentive-service: commission statements' workflow and disputes
    "StatementComputed", "StatementApproved", "StatementLocked", "StatementPaid", "DisputeOpened",
    "DisputeResolved",
    # incentive-service: programs (contests), for the participants' notifications
    "ProgramStarted", "ProgramRulesChanged", "ProgramMilestoneReached", "BadgeEarned", "ProgramWon",
    # pipeline-service: the org's business calendar, for every service that counts business days or hours
    "BusinessCalendarSet",
}


def test_catalogue_has_every_event_of_the_design():
    assert set(EVENT_TYPES) == DESIGN_EVENTS | ADDED_EVENTS


def test_event_round_trips_through_json_with_money_as_a_decimal_string():
    event = make_event(LeadWonV1(lead_id="l1", pipeline_id="p1", value=Decimal("1234.50"), currency="EUR",
                                 won_at="2026-11-01T10:00:00Z"), org_id="acme", subject_id="l1", subject_version=7)
    raw = event.to_json()
    assert b'"value":"1234.50"' in raw
    back = Envelope.from_json(raw)
    assert back == event and back.producer == "pipeline-service" and back.subject_version == 7
    data = parse_data(back)
    assert isinstance(data, LeadWonV1) and data.value == Decimal("1234.50")


def test_new_events_inherit_the_current_correlation_id():
    token = correlation_id_var.set("req-42")
    try:
        event = make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id="l1")), org_id="acme", subject_id="l1")
    finally:
        correlation_id_var.reset(token)
    assert event.correlation_id == "req-42"
    lone = make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id="l2")), org_id="acme", subject_id="l2")
    assert lone.correlation_id == str(lone.id)  # a new flow starts its own correlation


def test_consumers_ignore_unknown_fields_but_refuse_unknown_types_and_versions():
    event = make_event(LeadWonV1(lead_id="l1", pipeline_id="p1", won_at="2026-11-01T10:00:00Z"),
                       org_id="acme", subject_id="l1")
    newer = event.model_copy(update={"data": {**event.data, "added_later": 1}})
    assert isinstance(parse_data(newer), LeadWonV1)
    with pytest.raises(ValueError):
        parse_data(event.model_copy(update={"version": 99}))


async def test_unreadable_messages_are_permanent_failures():
    dispatcher = EventDispatcher({"LeadWon": []}, uow_factory=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(PermanentFailure):
        await dispatcher.handle_message(b"{not json", {})
    event = make_event(LeadWonV1(lead_id="l1", pipeline_id="p1", won_at="2026-11-01T10:00:00Z"),
                       org_id="acme", subject_id="l1")
    with pytest.raises(PermanentFailure):
        await dispatcher.handle_message(event.model_copy(update={"type": "Nope"}).to_json(), {})


def test_exported_schemas_in_docs_are_current():
    docs = Path(__file__).resolve().parents[2] / "docs" / "events"
    assert export(docs, check=True) == [], "run `salesflow schemas export`"
    assert set(render_schemas()) >= {f"{t}.v1.schema.json" for t in DESIGN_EVENTS}
