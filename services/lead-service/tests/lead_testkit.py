"""Helpers for lead-service tests: start the app, sign submissions, read the outbox."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from lead_service.config import Settings
from lead_service.domain.lead import COMPANY_FIELDS, CONTACT_FIELDS
from lead_service.domain.stored_lead import StoredCompany, StoredContact, StoredLead, to_cents
from lead_service.entrypoints.http import create_app
from salesflow_shared.infra_tables import outbox_table
from salesflow_shared.signatures import sign
from salesflow_shared.testing import auth_headers, eventually, running_app, service_test_settings


@dataclass
class LeadApp:
    app: Any
    client: httpx.AsyncClient

    @property
    def context(self) -> Any:
        return self.app.state.context

    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        async with self.context.database.session() as session:
            query = sa.select(outbox_table.c.payload).order_by(outbox_table.c.id)
            if _ORGS:
                query = query.where(outbox_table.c.org_id.in_(list(_ORGS.values())))
            if event_type:
                query = query.where(outbox_table.c.event_type == event_type)
            return [json.loads(p) for p in (await session.execute(query)).scalars()]

    async def scalar(self, statement: Any) -> Any:
        async with self.context.database.session() as session:
            return (await session.execute(statement)).scalar_one()


@asynccontextmanager
async def shared_app(postgres_server_url: str, amqp_url: str) -> AsyncIterator[LeadApp]:
    """One app with its own database and bus namespace, for a whole test module."""
    from salesflow_shared.db import drop_postgres_database, ensure_postgres_database
    from salesflow_shared.testing import delete_namespace

    tag = uuid.uuid4().hex[:10]
    url = f"{postgres_server_url.rstrip('/')}/sft_lead_{tag}"
    namespace = f"t{tag}."
    await ensure_postgres_database(url)
    try:
        async with start_lead_app(url, amqp_url, namespace) as app:
            yield app
    finally:
        await delete_namespace(amqp_url, namespace)
        await drop_postgres_database(url)


@asynccontextmanager
async def start_lead_app(database_url: str, amqp_url: str | None, namespace: str,
                         **overrides: Any) -> AsyncIterator[LeadApp]:
    settings = service_test_settings(Settings, database_url=database_url, amqp_url=amqp_url,
                                     namespace=namespace, **overrides)
    app = create_app(settings)
    async with running_app(app) as client:
        yield LeadApp(app, client)


# Tests sharing one app (one database and bus namespace per module) each get their own orgs: the names
# "org-a" / "org-b" used in a test map to ids unique to that test, so tests never see each other's rows.
_ORGS: dict[str, str] = {}


def use_fresh_orgs() -> None:
    _ORGS.clear()
    _ORGS.update({name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("org-a", "org-b")})


def org_id(name: str = "org-a") -> str:
    return _ORGS.get(name, name)


def admin(org: str = "org-a", **extra: str) -> dict[str, str]:
    return auth_headers(org_id(org), "admin", "admin-1", **extra)


def rep(org: str = "org-a", sub: str = "rep-1", **extra: str) -> dict[str, str]:
    return auth_headers(org_id(org), "rep", sub, **extra)


def signed_headers(secret: str, body: bytes, *, at: int | None = None, **extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "Salesflow-Signature": sign(secret, body, int(time.time()) if at is None else at), **extra}


async def create_form(client: httpx.AsyncClient, definition: dict[str, Any], **changes: Any) -> dict[str, Any]:
    r = await client.post("/v1/forms", json={**definition, **changes}, headers=admin())
    assert r.status_code == 201, r.text
    return r.json()


def submit_url(form: dict[str, Any]) -> str:
    return f"/v1/forms/{form['id']}/submissions"


def a_lead(email: str = "ada@acme.io", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"contact": {"first_name": "Ada", "last_name": "Lovelace", "email": email,
                                        "title": "CTO"},
                            "company": {"name": "Acme"}, "country": "DE", "value": "1200.00", "currency": "EUR",
                            "source": "api"}
    body.update(fields)
    return body


class FakeProvider:
    """A local stand-in for the enrichment provider: `mode` is "ok", "slow" (sleeps past the timeout) or
    "error" (500); `requests` records what it was asked. `answers` maps an email to the raw body (bytes) the
    provider answers for it instead, `delay_s` holds every answer back that long."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.answers: dict[str, bytes] = {}
        self.delay_s = 0.0
        self.url = ""

    def app(self) -> Any:
        import asyncio

        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        async def enrich(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            if self.mode == "slow":
                await asyncio.sleep(1)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.mode == "error":
                return JSONResponse({"error": "boom"}, status_code=500)
            if body.get("email") in self.answers:
                return Response(self.answers[body["email"]], media_type="application/json")
            return JSONResponse({"company": {"name": "Should Not Override", "size": "201-500",
                                             "industry": "Aerospace"},
                                 "location": {"country": "US", "region": "California"}})
        return Starlette(routes=[Route("/enrich", enrich, methods=["POST"])])


@asynccontextmanager
async def fake_provider() -> AsyncIterator[FakeProvider]:
    import asyncio
    import socket

    import uvicorn

    provider = FakeProvider()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(provider.app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    task = asyncio.create_task(server.serve())

    async def serving() -> None:
        assert server.started

    await eventually(serving, interval=0.01)
    provider.url = f"http://127.0.0.1:{port}/enrich"
    try:
        yield provider
    finally:
        server.should_exit = True
        await task


def a_stored_lead(shape: dict[str, Any]) -> StoredLead:
    """The typed lead of a partial lead in its API shape (for the pure rules: de-duplication, scoring); what the
    shape leaves out is empty, or what a new lead has."""
    contact, company, value = shape.get("contact", {}), shape.get("company", {}), shape.get("value")
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return StoredLead(
        id=shape.get("id", "lead-1"),
        contact=StoredContact(contact.get("contact_id"), *(contact.get(f) for f in CONTACT_FIELDS)),
        company=StoredCompany(company.get("company_id"), *(company.get(f) for f in COMPANY_FIELDS)),
        **{f: shape.get(f) for f in ("country", "region", "postcode", "timezone", "language", "product_line",
                                     "currency", "disqualify_reason", "owner_id", "team_id", "form_id", "import_id")},
        value=None if value is None else to_cents(value), expected_close_date=None,
        source=shape.get("source", "api"), utm=shape.get("utm", {}), custom_fields=shape.get("custom_fields", {}),
        status=shape.get("status", "open"), score=0, score_breakdown=[], enrichment={}, enrichment_status="none",
        version=shape.get("version", 1), created_at=at, updated_at=at, erased_at=None)
