"""On PostgreSQL a new person's `POST /v1/leads` is one transaction of three statements: the person (company,
contact, open lead), the lead, and its timeline entries written together with its outbox row."""
from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from lead_testkit import a_lead, admin

from lead_service.adapters.orm import lead_timeline
from salesflow_shared.infra_tables import outbox_table

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_new_persons_lead_is_three_statements_and_its_entries_and_event_are_written(lead_app):
    engine = lead_app.context.database.engine.sync_engine
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        answer = await lead_app.client.post("/v1/leads", json=a_lead("stella@statements.io"), headers=admin())
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert answer.status_code == 201, answer.text
    lead_id = answer.json()["id"]
    # The service's workers (the relay, the import sweep) and the org's setup, read once, send their own.
    intake = [s for s in sent if s.startswith(("WITH", "INSERT"))]
    assert [s.split(" (")[0] for s in intake] == [
        "WITH upserted_company AS", "INSERT INTO leads", "WITH entries AS"], sent
    assert intake[-1].startswith("WITH entries AS ( INSERT INTO lead_timeline") and "INSERT INTO outbox" in intake[-1]

    async with lead_app.context.database.session() as session:
        entries = (await session.execute(sa.select(lead_timeline.c.kind, lead_timeline.c.details, lead_timeline.c.id)
                                         .where(lead_timeline.c.lead_id == lead_id)
                                         .order_by(lead_timeline.c.id))).all()
        [row] = (await session.execute(sa.select(outbox_table).where(
            outbox_table.c.event_type == "LeadCreated",
            outbox_table.c.payload.contains(lead_id)))).all()
    assert [(kind, id_.rsplit(".", 1)[1]) for kind, _, id_ in entries] == [("created", "0"), ("scored", "1")]
    assert entries[0].details["status"] == "open" and isinstance(entries[1].details["score"], int)
    event = json.loads(row.payload)
    assert event["data"]["lead"]["lead_id"] == lead_id and row.event_id == event["id"]
    assert row.headers["x-org-id"] == row.org_id
