"""`KeyedOutboxRows`: events built as `UnitOfWork.publish` builds them, each keyed by what decides whether it is
written; only the keys a statement wrote are handed to the relay, in the order the events were added."""
from __future__ import annotations

import json

from salesflow_shared.events import LeadDisqualifiedV1, LeadErasedV1
from salesflow_shared.logging import traceparent_var
from salesflow_shared.outbox_rows import KEYED_OUTBOX_ARRAYS, KeyedOutboxRows, unnest


def test_only_the_rows_of_the_keys_written_are_handed_over_in_the_order_added():
    rows = KeyedOutboxRows("test-service")
    token = traceparent_var.set("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    try:
        rows.add("d-1", LeadDisqualifiedV1(lead_id="l-1", reason="spam"), org_id="org-a", subject_id="l-1")
    finally:
        traceparent_var.reset(token)
    rows.add("d-2", LeadErasedV1(lead_id="l-2"), org_id="org-a", subject_id="l-2")
    rows.add("d-1", LeadErasedV1(lead_id="l-1"), org_id="org-a", subject_id="l-1")

    handed = rows.committed({"d-1"})
    assert [message.event_type for message, _ in handed] == ["LeadDisqualified", "LeadErased"]
    assert [json.loads(message.body)["subject_id"] for message, _ in handed] == ["l-1", "l-1"]
    assert handed[0][0].headers == {"x-org-id": "org-a",
                                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    assert {json.loads(message.body)["producer"] for message, _ in handed} == {"test-service"}
    assert [row["event_type"] for row in rows.rows_of({"d-2"})] == ["LeadErased"]
    assert rows.committed(set()) == []


def test_the_rows_are_passed_as_one_array_per_column_with_their_keys():
    rows = KeyedOutboxRows("test-service")
    rows.add("d-1", LeadErasedV1(lead_id="l-1"), org_id="org-a", subject_id="l-1")
    rows.add("d-2", LeadErasedV1(lead_id="l-2"), org_id="org-b", subject_id="l-2")
    params = rows.params("o")
    assert params["o_key"] == ["d-1", "d-2"] and params["o_org_id"] == ["org-a", "org-b"]
    assert [json.loads(headers) for headers in params["o_headers"]] == [{"x-org-id": "org-a"}, {"x-org-id": "org-b"}]
    assert unnest("o", KEYED_OUTBOX_ARRAYS).startswith("unnest(CAST(:o_key AS varchar[]), CAST(:o_event_id AS")
    assert unnest("o", KEYED_OUTBOX_ARRAYS).endswith(
        "WITH ORDINALITY AS o(key, event_id, event_type, org_id, payload, headers, created_at, n)")
