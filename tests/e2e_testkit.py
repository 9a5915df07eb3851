"""The whole system for cross-service journeys: the six services as real processes (tests/system_harness.py),
with the outside parties played by local servers — an SMTP server (aiosmtpd), a fake Mailchimp and a fake
enrichment provider — running on a background event loop so they keep answering whatever the test's own
loop is doing. Also: HTTP helpers, signed web-form posts, direct database reads and an event observer."""
from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from lead_testkit import FakeProvider
from notification_fakes import FakeMailchimp
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from system_harness import EmbeddedSystem, RunningSystem

from salesflow_shared.signatures import sign
from salesflow_shared.testing import LocalHttpServer, SmtpSink, auth_headers, free_port

T = TypeVar("T")

LEAD, PIPELINE, ASSIGNMENT, NOTIFICATION, METRICS, INCENTIVE = (
    "lead-service", "pipeline-service", "assignment-service", "notification-service", "metrics-service",
    "incentive-service")
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us7"
DACH_REPS = ["ann", "bob"]
OTHER_REPS = ["cid"]
ACCOUNT_MANAGER = "amy"  # takes won customers over


TEXT_COLUMNS = """
SELECT c.table_name, c.column_name FROM information_schema.columns c
JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
  AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'character')
ORDER BY c.table_name, c.ordinal_position
"""


class BackgroundLoop:
    """An asyncio loop on its own thread for the fake outside servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fakes-loop")
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class ProviderServer:
    """lead-service's enrichment provider (the FakeProvider app of lead-service's tests) on a free port."""

    def __init__(self) -> None:
        self.provider = FakeProvider()
        self.port = free_port()
        self.provider.url = f"http://127.0.0.1:{self.port}/enrich"

    async def start(self) -> None:
        self._http = LocalHttpServer(self.provider.app(), self.port)
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()


class World:
    """The running system plus the outside parties it talks to."""

    def __init__(self, system: RunningSystem | EmbeddedSystem, smtp: SmtpSink, mailchimp: FakeMailchimp,
                 provider: ProviderServer, event_holds: Path | None) -> None:
        self.system, self.smtp, self.mailchimp, self.provider = system, smtp, mailchimp, provider
        self.event_holds = event_holds

    @asynccontextmanager
    async def events_held_back(self, org: str, service: str, event_types: list[str]) -> AsyncIterator[None]:
        """While inside, `service` does not handle the org's events of `event_types` (the services' test-only
        event hold, salesflow_shared/event_hold_for_tests.py): they wait and arrive after the others, once the
        block is left."""
        assert self.event_holds is not None, "started without event holds (running_world(event_holds=False))"
        path = self.event_holds / f"{org}.json"
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps({service: event_types}))
        os.replace(staged, path)  # whole, never half-written
        try:
            yield
        finally:
            path.unlink()

    async def handled(self, service: str, event_type: str, outcome: str) -> float:
        """How many events of `event_type` the service has handled with `outcome` (ok, duplicate, error), from its
        Prometheus metrics."""
        async with httpx.AsyncClient(base_url=self.url(service), timeout=10) as client:
            text = (await client.get("/metrics")).text
        pattern = (r'^salesflow_messages_handled_total\{event_type="' + re.escape(event_type) + r'",outcome="'
                   + re.escape(outcome) + r'"\} (\S+)$')
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    def url(self, service: str) -> str:
        return self.system.url(service)

    def client(self, service: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url(service), headers=headers or {}, timeout=30)

    @asynccontextmanager
    async def admin_clients(self, org: str, *services: str) -> AsyncIterator[list[httpx.AsyncClient]]:
        """A client of each of `services` (in that order) as `org`'s admin, closed together."""
        async with AsyncExitStack() as stack:
            yield [await stack.enter_async_context(self.client(service, admin(org))) for service in services]

    async def rows(self, service: str, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Read a service's own database directly (what it really stores)."""
        engine = create_async_engine(self.system.services[service].database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(sa.text(sql), params)).mappings().all()]
        finally:
            await engine.dispose()

    async def where_found(self, service: str, needles: list[str]) -> list[tuple[str, str, str]]:
        """(table, column, needle) for every text/JSON column of every table of the service's database that
        holds one of the needles (case-insensitive) — inbox, outbox and event logs included."""
        engine = create_async_engine(self.system.services[service].database_url, poolclass=NullPool)
        params = {f"n{i}": f"%{needle}%" for i, needle in enumerate(needles)}
        found = []
        try:
            async with engine.connect() as conn:
                columns: dict[str, list[str]] = {}
                for table, column in (await conn.execute(sa.text(TEXT_COLUMNS))).all():
                    columns.setdefault(table, []).append(column)
                for table, names in columns.items():
                    counts = ", ".join(f'count(*) FILTER (WHERE "{name}"::text ILIKE :n{i}) AS "{c}_{i}"'
                                       for c, name in enumerate(names) for i in range(len(needles)))
                    row = (await conn.execute(sa.text(f'SELECT {counts} FROM "{table}"'), params)).mappings().one()
                    found += [(table, name, needle) for c, name in enumerate(names)
                              for i, needle in enumerate(needles) if row[f"{c}_{i}"]]
        finally:
            await engine.dispose()
        return found


def service_env(smtp: SmtpSink, mailchimp: FakeMailchimp, provider: ProviderServer,
                pool_size: int = 4, event_holds: Path | None = None) -> dict[str, dict[str, str]]:
    """Per-service settings: small pools (six processes share PostgreSQL with other tests), fast workers, the
    local SMTP server, the fake Mailchimp (base-URL override), the fake enrichment provider and the folder of
    the test event holds (World.events_held_back)."""
    common = {"SALESFLOW_DB_POOL_SIZE": str(pool_size),
              **({"SALESFLOW_TEST_EVENT_HOLD_DIR": str(event_holds)} if event_holds is not None else {})}
    return {
        LEAD: {**common, "SALESFLOW_ENRICHMENT_URL": provider.provider.url,
               "SALESFLOW_ENRICHMENT_POLL_INTERVAL_S": "0.2"},
        PIPELINE: {**common, "SALESFLOW_OVERDUE_SWEEP_INTERVAL_S": "5", "SALESFLOW_REOPEN_INTERVAL_S": "0.5"},
        ASSIGNMENT: dict(common),
        NOTIFICATION: {**common, "SALESFLOW_SMTP_HOST": "127.0.0.1", "SALESFLOW_SMTP_PORT": str(smtp.port),
                       "SALESFLOW_MAILCHIMP_BASE_URL": mailchimp.base_url,
                       "SALESFLOW_MAILCHIMP_BACKOFF_S": "0.05", "SALESFLOW_DELIVERY_RETRY_BASE_S": "1",
                       "SALESFLOW_SCHEDULER_POLL_INTERVAL_S": "0.2"},
        METRICS: {**common, "SALESFLOW_FORECAST_SNAPSHOT_INTERVAL_S": "0",
                  "SALESFLOW_QUOTA_MILESTONE_INTERVAL_S": "0.5"},
        INCENTIVE: {**common, "SALESFLOW_RECALCULATION_INTERVAL_S": "0.2"},
    }


@contextmanager
def running_world(workdir: Path, pool_size: int = 4, extra: dict[str, dict[str, str]] | None = None,
                  mode: str = "full", event_holds: bool = True) -> Iterator[World]:
    """The system in `mode` ("full": a process per service on PostgreSQL and RabbitMQ; "embedded": the one-process
    SQLite mode of `salesflow run`), with the fake outside parties. `event_holds=False`: without the test-only
    event hold (`World.events_held_back`), as deployed: with it, every delivery looks for a hold file (the benches
    measure the services' CPU)."""
    background = BackgroundLoop()
    smtp = SmtpSink()
    smtp.start()
    mailchimp = FakeMailchimp()
    provider = ProviderServer()
    background.run(mailchimp.start())
    background.run(provider.start())
    holds = workdir / "event-holds" if event_holds else None
    if holds is not None:
        holds.mkdir(exist_ok=True)
    env = service_env(smtp, mailchimp, provider, pool_size, holds)
    for name, values in (extra or {}).items():
        env[name] = {**env[name], **values}
    system: Any = RunningSystem(workdir, extra_env=env) if mode == "full" else EmbeddedSystem(workdir, extra_env=env)
    try:
        system.start_all(timeout=90)
        yield World(system, smtp, mailchimp, provider, holds)
    finally:
        system.stop_all()
        background.run(mailchimp.stop())
        background.run(provider.stop())
        smtp.stop()
        background.close()


# ------------------------------------------------------------------------------------------------ HTTP helpers
def admin(org: str) -> dict[str, str]:
    return auth_headers(org, "admin", "admin-1")


def manager(org: str) -> dict[str, str]:
    return auth_headers(org, "manager", "manager-1")


def rep(org: str, rep_id: str) -> dict[str, str]:
    return auth_headers(org, "rep", rep_id)


def new_org(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def ok(response_or_coro: Awaitable[httpx.Response] | httpx.Response, *statuses: int) -> Any:
    """The JSON body of a response that must have one of `statuses` (default 200/201/202)."""
    response = await response_or_coro if not isinstance(response_or_coro, httpx.Response) else response_or_coro
    wanted = statuses or (200, 201, 202)
    assert response.status_code in wanted, f"{response.request.method} {response.request.url}: " \
                                           f"{response.status_code} {response.text}"
    return response.json() if response.content else None


def signed(secret: str, body: bytes, **extra: str) -> dict[str, str]:
    """A server-to-server form post's headers: `Salesflow-Signature: t=<unix>,v1=<HMAC-SHA256>`."""
    return {"Content-Type": "application/json", "Salesflow-Signature": sign(secret, body, int(time.time())), **extra}


async def submit_form(client: httpx.AsyncClient, form: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(fields).encode()
    return await ok(client.post(f"/v1/forms/{form['id']}/submissions", content=body,
                                headers=signed(form["signing_secret"], body)), 201)


async def mailchimp_rule(client: httpx.AsyncClient, rule: dict[str, Any]) -> dict[str, Any]:
    """Create a Mailchimp rule naming a pipeline just created: notification-service refuses it (422 on
    pipeline_id) until pipeline-service's PipelineDefined has reached it, a moment after the creation."""
    async def accepted() -> dict[str, Any]:
        response = await client.post("/v1/mailchimp/rules", json=rule)
        if response.status_code == 422:
            assert [e["field"] for e in response.json()["errors"]] == ["pipeline_id"], response.text
            raise AssertionError(f"the pipeline is not known yet: {response.text}")
        return await ok(response, 201)
    return await poll(accepted, timeout=20)


def rep_email(org: str, rep_id: str) -> str:
    """Each org's reps get their own addresses, so journeys sharing the SMTP server never see each other's mail."""
    return f"{rep_id}@{org}.example"


async def setup_team(client: httpx.AsyncClient, org: str, reps: list[str], team_name: str,
                     **rep_fields: Any) -> str:
    """Reps (user ids = rep ids, addresses from rep_email) and a team in that round-robin order."""
    for rep_id in reps:
        await ok(client.post("/v1/reps", json={"user_id": rep_id, "name": f"Rep {rep_id.title()}",
                                               "email": rep_email(org, rep_id), **rep_fields}), 201)
    return (await ok(client.post("/v1/teams", json={"name": team_name, "member_ids": reps}), 201))["id"]


async def put_rules(client: httpx.AsyncClient, rules: list[dict[str, Any]]) -> dict[str, Any]:
    current = await client.get("/v1/routing-rules")
    # Before the first publication the rule set is at version 0 (ETag "0"); every PUT is conditional.
    headers = {"If-Match": current.headers["ETag"] if current.status_code == 200 else '"0"'}
    return await ok(client.put("/v1/routing-rules", json={"rules": rules}, headers=headers), 200)


async def inbound_pipeline(pipeline_api: httpx.AsyncClient) -> dict[str, Any]:
    """The org's "Inbound" pipeline, from pipeline-service's inbound web-form template."""
    return await ok(pipeline_api.post("/v1/pipelines/templates/inbound-web-form/instantiate",
                                      json={"name": "Inbound"}), 201)


def fallback_rule(pipeline_id: str, team_id: str, rule_id: str = "all", name: str = "All") -> dict[str, Any]:
    """The routing rule for the leads no other rule takes: into `pipeline_id`, round robin over the team."""
    return {"id": rule_id, "name": name, "fallback": True, "pipeline_id": pipeline_id,
            "owner": {"strategy": "round_robin", "team_id": team_id}}


async def welcome_template(client: httpx.AsyncClient, subject: str = "Welcome, {{ lead.first_name }}") -> str:
    return (await ok(client.post("/v1/templates", json={
        "name": "Welcome", "audience": "prospect", "subject": subject,
        "html_body": "<p>Hello {{ lead.first_name }}</p><p><a href='{{ unsubscribe_url }}'>unsubscribe</a></p>",
        "text_body": "Hello {{ lead.first_name }}\n\nUnsubscribe: {{ unsubscribe_url }}\n"}), 201))["id"]


async def position(client: httpx.AsyncClient, lead_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/positions/{lead_id}")
    assert response.status_code == 200, response.text
    return response.json()


def smtp_to(smtp: SmtpSink, address: str) -> list[Any]:
    return [m for m in list(smtp.messages) if address.lower() in str(m["To"]).lower()]


async def all_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = await ok(client.get(path, params={"limit": 200, **params, **({"cursor": cursor} if cursor else {})}))
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


async def poll(check: Callable[[], Awaitable[T]], timeout: float = 20, interval: float = 0.1) -> T:
    """`eventually` that also tolerates transport errors (a service being restarted)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------------------------ the inbound org
@dataclass
class InboundOrg:
    org: str
    pipeline_id: str
    stage_ids: list[str]
    territory_id: str
    form: dict[str, Any]
    milestone: dict[str, Any]


def quarter_start(today: date) -> date:
    return date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)


async def setup_inbound_org(world: World, org: str) -> InboundOrg:
    """What an admin sets up for the seed's web-form process: the inbound pipeline template; reps, teams, a DACH
    territory and routing rules (territory rule, round robin; fallback round robin); a welcome sequence and its
    template; Mailchimp settings and a subscribe rule on the first stage; a milestone rule on leaving it; rep
    quotas for this quarter; scoring rules; a web form."""
    async with world.client(PIPELINE, admin(org)) as pipeline_api:
        pipeline = await inbound_pipeline(pipeline_api)
    pipeline_id = pipeline["id"]
    qualification = pipeline["stages"][0]["id"]
    async with world.client(ASSIGNMENT, admin(org)) as assignment_api:
        dach_team = await setup_team(assignment_api, org, DACH_REPS, "DACH inside sales")
        other_team = await setup_team(assignment_api, org, OTHER_REPS, "Rest of world")
        territory = await ok(assignment_api.post("/v1/territories", json={
            "name": "DACH", "countries": ["DE", "AT", "CH"], "regions": [], "postcode_ranges": [],
            "rep_ids": DACH_REPS}), 201)
        await put_rules(assignment_api, [
            {"id": "dach", "name": "DACH web leads", "triggers": ["lead_created"],
             "conditions": [{"field": "territory", "op": "eq", "value": territory["id"]}],
             "pipeline_id": pipeline_id, "owner": {"strategy": "round_robin", "team_id": dach_team}},
            fallback_rule(pipeline_id, other_team, "everyone-else", "Everyone else")])
    async with world.client(NOTIFICATION, admin(org)) as notification_api:
        template_id = await welcome_template(notification_api)
        await ok(notification_api.post("/v1/sequences", json={
            "name": "Web-form welcome", "trigger": "lead_created", "source": "web_form",
            "steps": [{"template_id": template_id, "delay_minutes": 0}]}), 201)
        await ok(notification_api.put("/v1/mailchimp/settings", json={"api_key": MAILCHIMP_KEY,
                                                                       "nurture_list_id": "nurture"},
                                      headers={"If-Match": '"0"'}), 200)  # the first setting of a new org
        await mailchimp_rule(notification_api, {
            "pipeline_id": pipeline_id, "stage_id": qualification, "action": "subscribe", "list_id": "inbound",
            "tags": ["web-form"]})
        milestone = await ok(notification_api.post("/v1/milestones", json={
            "name": "Qualified a big one", "kind": "stage_exit_above_value", "stage_id": qualification,
            "min_value": "1000", "currency": "EUR", "channels": ["email"]}), 201)
    async with world.client(METRICS, admin(org)) as metrics_api:
        start = quarter_start(datetime.now(UTC).date())
        for rep_id in DACH_REPS:
            await ok(metrics_api.post("/v1/quotas", json={"scope": "rep", "scope_id": rep_id, "period": "quarter",
                                                           "period_start": start.isoformat(), "amount": "20000",
                                                           "currency": "EUR"}), 201)
    async with world.client(LEAD, admin(org)) as lead_api:
        for rule in [
                {"name": "business email", "points": 10, "config": {"kind": "email_type", "email_type": "business"}},
                {"name": "decision maker", "points": 15, "config": {"kind": "title_keywords", "keywords": ["CTO"]}},
                {"name": "DACH", "points": 5, "config": {"kind": "country_in", "countries": ["DE", "AT", "CH"]}}]:
            await ok(lead_api.post("/v1/scoring-rules", json=rule), 201)
        form = await ok(lead_api.post("/v1/forms", json={
            "name": "Contact sales", "required": ["contact.email"],
            "mapping": {"email": "contact.email", "first": "contact.first_name", "last": "contact.last_name",
                        "phone": "contact.phone", "job": "contact.title", "company": "company.name",
                        "country": "country", "budget": "value"},
            "defaults": {"product_line": "crm", "currency": "EUR"}}), 201)
    return InboundOrg(org, pipeline_id, [s["id"] for s in pipeline["stages"]], territory["id"], form, milestone)
