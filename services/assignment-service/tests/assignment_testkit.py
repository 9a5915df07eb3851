"""Helpers for assignment-service's tests: a running app on real PostgreSQL (+ RabbitMQ), leads and events."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import sqlalchemy as sa

from assignment_service.adapters.orm import decisions, leads, rotations
from assignment_service.config import Settings
from assignment_service.entrypoints.http import create_app
from salesflow_shared.events import Envelope, LeadCreatedV1, LeadSnapshot, LeadUpdatedV1, make_event
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.testing import auth_headers, running_app, service_test_settings

ORG = "org-a"
ADMIN = auth_headers(ORG, "admin", "admin-1")
MANAGER = auth_headers(ORG, "manager", "manager-1")


# Small pools: PostgreSQL is shared with every other test run on the machine, and decisions on one rotation
# are serialised by its row lock anyway, so more connections would only wait.
TEST_POOL = {"db_pool_size": 3, "consumer_prefetch": 8}


def settings_for(database_url: str, amqp_url: str = "", namespace: str = "", **overrides: Any) -> Settings:
    return service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url, namespace=namespace,
                                 **{**TEST_POOL, **overrides})


@asynccontextmanager
async def assignment_app(database_url: str, amqp_url: str = "", namespace: str = "",
                         **overrides: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings_for(database_url, amqp_url, namespace, **overrides))
    async with running_app(app) as client:
        yield app, client


def rep_body(user_id: str, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "name": f"Rep {user_id}", "email": f"{user_id}@example.com", **extra}


async def add_reps(client: httpx.AsyncClient, ids: list[str], **extra: Any) -> None:
    for rep_id in ids:
        response = await client.post("/v1/reps", json=rep_body(rep_id, **extra), headers=ADMIN)
        assert response.status_code == 201, response.text


async def add_team(client: httpx.AsyncClient, name: str, members: list[str]) -> str:
    response = await client.post("/v1/teams", json={"name": name, "member_ids": members}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def rules_etag(client: httpx.AsyncClient, headers: dict[str, str] = ADMIN) -> str:
    """The current rule set's ETag, as an admin reads it before publishing ("0" before the first publication)."""
    current = await client.get("/v1/routing-rules", headers=headers)
    return current.headers["ETag"] if current.status_code == 200 else '"0"'


async def publish_rules(client: httpx.AsyncClient, rules: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.put("/v1/routing-rules", json={"rules": rules},
                                headers={**ADMIN, "If-Match": await rules_etag(client)})
    assert response.status_code == 200, response.text
    return response.json()


def fallback(team_id: str, pipeline_id: str = "p-default", strategy: str = "round_robin",
             **owner: Any) -> dict[str, Any]:
    return {"name": "everyone else", "fallback": True, "pipeline_id": pipeline_id,
            "owner": {"strategy": strategy, "team_id": team_id, **owner}}


def lead_created(lead_id: str | None = None, org_id: str = ORG, version: int = 1, **fields: Any) -> Envelope:
    lead_id = lead_id or str(uuid.uuid4())
    return make_event(LeadCreatedV1(lead=LeadSnapshot(lead_id=lead_id, **fields)), org_id=org_id,
                      subject_id=lead_id, subject_version=version, producer="lead-service")


def lead_updated(lead_id: str, version: int, changed: list[str], cause: str = "edit", **fields: Any) -> Envelope:
    return make_event(LeadUpdatedV1(lead=LeadSnapshot(lead_id=lead_id, **fields), changed=changed, cause=cause),
                      org_id=ORG, subject_id=lead_id, subject_version=version, producer="lead-service")


async def outbox_events(app: Any, event_type: str | None = None) -> list[dict[str, Any]]:
    async with app.state.context.database.session() as session:
        query = sa.select(outbox_table.c.payload).order_by(outbox_table.c.id)
        if event_type:
            query = query.where(outbox_table.c.event_type == event_type)
        return [Envelope.from_json(p).model_dump(mode="json") for (p,) in await session.execute(query)]


async def owners(app: Any, org_id: str = ORG) -> dict[str, str | None]:
    async with app.state.context.database.session() as session:
        rows = await session.execute(sa.select(leads.c.lead_id, leads.c.owner_id).where(leads.c.org_id == org_id))
        return {r.lead_id: r.owner_id for r in rows}


async def table_count(app: Any, table: sa.Table) -> int:
    async with app.state.context.database.session() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


__all__ = ["ORG", "ADMIN", "MANAGER", "decisions", "rotations", "leads"]


# ------------------------------------------------------------------ RabbitMQ side of the tests
class Broker:
    """Publishes envelopes to the namespaced exchange and collects what assignment-service publishes."""

    def __init__(self, amqp_url: str, namespace: str) -> None:
        self.amqp_url, self.namespace = amqp_url, namespace
        self.received: list[dict[str, Any]] = []

    async def __aenter__(self) -> Broker:
        import aio_pika

        self.connection = await aio_pika.connect(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.declare_exchange(f"{self.namespace}salesflow.events",
                                                            aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await self.channel.declare_queue(f"{self.namespace}test.events", durable=True)
        for event_type in ("LeadRouted", "LeadAssigned"):
            await queue.bind(self.exchange, routing_key=event_type)

        async def on_message(message: Any) -> None:
            async with message.process():
                self.received.append(Envelope.from_json(message.body).model_dump(mode="json"))

        await queue.consume(on_message)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.connection.close()

    async def publish(self, envelope: Envelope) -> None:
        import aio_pika

        await self.exchange.publish(aio_pika.Message(
            envelope.to_json(), content_type="application/json", message_id=str(envelope.id), type=envelope.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=envelope.type)

    def of_type(self, event_type: str, lead_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.received if e["type"] == event_type and (lead_id is None or e["subject_id"] == lead_id)]


@asynccontextmanager
async def replica_process(database_url: str, amqp_url: str, namespace: str) -> AsyncIterator[str]:
    """A second assignment-service replica as its own process (uvicorn) on the same database and queue."""
    import asyncio
    import os
    import socket
    import sys

    from salesflow_shared.testing import eventually

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SALESFLOW_ENVIRONMENT": "test", "SALESFLOW_DATABASE_URL": database_url,
           "SALESFLOW_AMQP_URL": amqp_url, "SALESFLOW_BUS_NAMESPACE": namespace,
           "SALESFLOW_MIGRATE_ON_START": "false", "SALESFLOW_RETRY_DELAYS_MS": "[100, 200]",
           "SALESFLOW_OUTBOX_POLL_INTERVAL_S": "0.2", "SALESFLOW_LOG_LEVEL": "WARNING",
           "SALESFLOW_DB_POOL_SIZE": str(TEST_POOL["db_pool_size"]),
           "SALESFLOW_CONSUMER_PREFETCH": str(TEST_POOL["consumer_prefetch"])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "--factory", "assignment_service.entrypoints.http:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            async def ready() -> None:
                try:
                    response = await client.get("/readyz")
                except httpx.HTTPError as exc:
                    raise AssertionError(str(exc)) from exc
                assert response.status_code == 200, response.text
            await eventually(ready, timeout=60, interval=0.2)
        yield base
    finally:
        process.terminate()
        await process.wait()


async def handled_by_replica(base: str, event_type: str = "LeadCreated") -> float:
    """What the replica's /metrics says it handled successfully."""
    async with httpx.AsyncClient(base_url=base) as client:
        text = (await client.get("/metrics")).text
    prefix = f'salesflow_messages_handled_total{{event_type="{event_type}",outcome="ok"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))
