"""On PostgreSQL a new person's intake writes its timeline entries and its outbox row in one statement: `POST
/v1/leads` is a transaction of three statements (the person: company, contact and open lead; the lead; entries
and outbox row), a lone signed submission of four (its raw submission row besides)."""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from lead_testkit import a_lead, admin, create_form, signed_headers, submit_url

from lead_service.adapters.orm import lead_timeline
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import statements_sent

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def intake_statements(lead_app: Any, request: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response,
                                                                                                     list[str]]:
    """The answer, and the writes its request sent (a web form's submission is written by the intake batcher's
    task; the service's workers, the relay and the import sweep, and the org's setup, read once, send reads and
    updates of their own)."""
    answer, sent = await statements_sent(lead_app.context.database, request, this_task_only=False)
    return answer, [s for s in sent if s.startswith(("WITH", "INSERT"))]


def fused(statement: str) -> bool:
    return statement.startswith("WITH entries AS ( INSERT INTO lead_timeline") and "INSERT INTO outbox" in statement


async def test_a_new_persons_lead_is_three_statements_and_its_entries_and_event_are_written(lead_app):
    answer, intake = await intake_statements(lead_app, lambda: lead_app.client.post(
        "/v1/leads", json=a_lead("stella@statements.io"), headers=admin()))
    assert answer.status_code == 201, answer.text
    lead_id = answer.json()["id"]
    assert [s.split(" (")[0] for s in intake] == ["WITH upserted_company AS", "INSERT INTO leads",
                                                  "WITH entries AS"], intake
    assert fused(intake[-1]), intake

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


async def test_a_lone_signed_submission_is_four_statements(lead_app):
    form = await create_form(lead_app.client, {"name": "Contact", "mapping": {"email": "contact.email"},
                                               "required": ["contact.email"]})
    body = json.dumps({"email": "lone@statements.io"}).encode()
    answer, intake = await intake_statements(lead_app, lambda: lead_app.client.post(
        submit_url(form), content=body, headers=signed_headers(form["signing_secret"], body)))
    assert answer.status_code == 201 and answer.json()["outcome"] == "created", answer.text
    assert len(intake) == 4 and fused(intake[-1]), intake
