"""Driving a running notification-service in tests: publish events through the real broker, read its tables."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import sqlalchemy as sa
from notification_fakes import FakeMailchimp

from notification_service.adapters.orm import deliveries, enrollments
from salesflow_shared.bus import OutgoingMessage
from salesflow_shared.clock import ManualClock
from salesflow_shared.events import (
    ContactData,
    Envelope,
    EventData,
    LeadCreatedV1,
    LeadSnapshot,
    PipelineDefinedV1,
    PipelineStageRef,
    make_event,
)
from salesflow_shared.infra_tables import inbox_table, outbox_table
from salesflow_shared.testing import SmtpSink, as_deliveries, auth_headers, eventually, statements_sent


class Harness:
    def __init__(self, app: Any, client: httpx.AsyncClient, clock: ManualClock, smtp: SmtpSink,
                 mailchimp: FakeMailchimp, org: str) -> None:
        # Tests share one database; each has its own org, and everything read here is scoped to it.
        self.org = org
        self.app = app
        self.client = client
        self.clock = clock
        self.smtp = smtp
        self.mailchimp = mailchimp
        self.context = app.state.context
        self.settings = app.state.settings
        self.versions: dict[tuple[str, str], int] = {}

    @property
    def admin(self) -> dict[str, str]:
        return auth_headers(self.org, "admin")

    async def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=self.admin)
        assert response.status_code == status, response.text
        return response.json()

    async def retire(self) -> None:
        """Nothing of this test's org may be sent later by another test's workers (the database is shared)."""
        async with self.context.database.session() as session:
            await session.execute(sa.update(deliveries).where(
                deliveries.c.org_id == self.org, deliveries.c.status.in_(("pending", "sending"))).values(
                status="cancelled", error="test over"))
            await session.execute(sa.update(enrollments).where(
                enrollments.c.org_id == self.org, enrollments.c.status == "active").values(
                status="stopped", stop_reason="test over"))
            await session.commit()

    # ------------------------------------------------------------------ events
    def envelope(self, data: EventData, subject_id: str, version: int | None = None) -> Envelope:
        stream = (data.producer, subject_id)
        if version is None:
            version = self.versions.get(stream, 0) + 1
        self.versions[stream] = max(version, self.versions.get(stream, 0))
        return make_event(data, org_id=self.org, subject_id=subject_id, subject_version=version)

    async def publish(self, envelope: Envelope) -> Envelope:
        """Through RabbitMQ, like any producer's outbox relay would."""
        await self.context.bus.publish(OutgoingMessage(event_id=str(envelope.id), event_type=envelope.type,
                                                       body=envelope.to_json(), headers={"x-org-id": envelope.org_id}))
        return envelope

    async def send(self, data: EventData, subject_id: str, version: int | None = None) -> Envelope:
        return await self.publish(self.envelope(data, subject_id, version))

    async def define_pipeline(self, pipeline_id: str, stage_ids: list[str], *, archived: bool = False,
                              version: int | None = None) -> None:
        """pipeline-service's PipelineDefined for the pipeline, handled: its stages are known here now."""
        definition = PipelineDefinedV1(pipeline_id=pipeline_id, name=f"Pipeline {pipeline_id}", archived=archived,
                                       stages=[PipelineStageRef(stage_id=s, name=s) for s in stage_ids])
        await self.handled(await self.send(definition, pipeline_id, version))

    async def handled(self, *envelopes: Envelope, timeout: float = 10) -> None:
        """Wait until the service's handlers processed these events (their inbox rows exist)."""
        wanted = {str(e.id) for e in envelopes}

        async def check() -> None:
            async with self.context.database.session() as session:
                seen = set((await session.execute(sa.select(inbox_table.c.event_id).where(
                    inbox_table.c.event_id.in_(wanted)))).scalars())
            assert seen == wanted, f"not handled yet: {wanted - seen}"
        await eventually(check, timeout)

    async def statements_handling(self, *envelopes: Envelope) -> list[str]:
        """Hand these deliveries to the service's dispatcher as one batch, in this task (as the bus hands a batch
        over), and return the statements the batch sent (`statements_sent`)."""
        _, sent = await statements_sent(self.context.database, lambda: self.context.dispatcher.handle_batch(
            as_deliveries(envelopes)))
        return sent

    async def settled(self, timeout: float = 10) -> None:
        """Wait until nothing is due: no due enrollment and no due pending delivery."""
        async def check() -> None:
            now = self.clock.now()
            async with self.context.database.session() as session:
                due_steps = (await session.execute(sa.select(sa.func.count()).select_from(enrollments).where(
                    enrollments.c.org_id == self.org, enrollments.c.status == "active",
                    enrollments.c.next_due_at <= now))).scalar_one()
                pending = (await session.execute(sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.org_id == self.org, deliveries.c.status == "pending",
                    deliveries.c.next_attempt_at <= now))).scalar_one()
                claimed = (await session.execute(sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.org_id == self.org, deliveries.c.status == "sending"))).scalar_one()
            assert due_steps == 0 and pending == 0 and claimed == 0, (due_steps, pending, claimed)
        await eventually(check, timeout)

    async def deliveries(self, **where: Any) -> list[dict[str, Any]]:
        async with self.context.database.session() as session:
            query = sa.select(deliveries).where(deliveries.c.org_id == self.org).order_by(
                deliveries.c.created_at, deliveries.c.id)
            for column, value in where.items():
                query = query.where(deliveries.c[column] == value)
            return [dict(r) for r in (await session.execute(query)).mappings().all()]

    async def enrollments(self, lead_id: str) -> list[dict[str, Any]]:
        async with self.context.database.session() as session:
            rows = (await session.execute(sa.select(enrollments).where(enrollments.c.org_id == self.org,
                                                                       enrollments.c.lead_id == lead_id)
                                          .order_by(enrollments.c.created_at))).mappings().all()
            return [dict(r) for r in rows]

    async def published(self, event_type: str) -> list[dict[str, Any]]:
        """Events this service put in its outbox (what it published)."""
        import json
        async with self.context.database.session() as session:
            rows = (await session.execute(sa.select(outbox_table.c.payload).where(
                outbox_table.c.org_id == self.org, outbox_table.c.event_type == event_type)
                .order_by(outbox_table.c.id))).scalars().all()
        return [json.loads(r) for r in rows]

    # ------------------------------------------------------------------ setup helpers
    async def template(self, name: str, subject: str, *, audience: str = "prospect", key: str | None = None,
                       html: str | None = None, text: str | None = None) -> str:
        body = {"name": name, "audience": audience, "subject": subject,
                "html_body": html or f"<p>{subject}</p><p><a href='{{{{ unsubscribe_url }}}}'>unsubscribe</a></p>",
                "text_body": text or f"{subject}\n\nUnsubscribe: {{{{ unsubscribe_url }}}}\n"}
        if key:
            body["key"] = key
        return (await self.post("/v1/templates", body))["id"]

    async def lead(self, lead_id: str | None = None, *, email: str | None = None, timezone: str | None = None,
                   value: str | None = None, source: str | None = None, first_name: str = "Ada",
                   custom_fields: dict[str, Any] | None = None) -> str:
        lead_id = lead_id or f"lead-{uuid.uuid4().hex[:8]}"
        snapshot = LeadSnapshot(lead_id=lead_id, contact=ContactData(first_name=first_name, last_name="Lovelace",
                                                                      email=email or f"{lead_id}@example.com"),
                                timezone=timezone, value=value, currency="EUR" if value else None, source=source,
                                custom_fields=custom_fields or {})
        await self.handled(await self.send(LeadCreatedV1(lead=snapshot), lead_id))
        return lead_id


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)
