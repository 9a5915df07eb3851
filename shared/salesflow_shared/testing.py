"""Test support every service's tests use (loaded as a pytest plugin).

Integration tests run against the real PostgreSQL and RabbitMQ on the machine. A server that cannot be
reached fails the test with a clear message; it never skips. Each test gets its own database and its own
bus namespace (exchange and queue prefix), so tests never see each other's rows or messages.
"""
from __future__ import annotations

import asyncio
import ctypes
import email
import email.message
import email.policy
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import pytest

from .auth import Role, mint_token
from .settings import DEV_JWT_SECRET

POSTGRES_URL = os.environ.get("SALESFLOW_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("SALESFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

T = TypeVar("T")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    if not _reachable(POSTGRES_URL, 5432):
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: start it (see README, Testing)", pytrace=False)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def amqp_url() -> str:
    if not _reachable(AMQP_URL, 5672):
        pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL}: start it (see README, Testing)", pytrace=False)
    return AMQP_URL


# Fresh databases are expensive to drop (DROP DATABASE forces a checkpoint, about a second each), so a test's
# databases are emptied afterwards (schema dropped and recreated: as empty as new) and handed to later tests;
# they are dropped when the session ends.
_IDLE_DATABASES: list[str] = []
_ALL_DATABASES: list[str] = []


@pytest.fixture
async def make_database_url(postgres_server_url: str) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Fresh, empty PostgreSQL databases for this test, one per call."""
    from .db import ensure_postgres_database

    handed_out: list[str] = []

    async def _make(label: str = "db") -> str:
        if _IDLE_DATABASES:
            url = _IDLE_DATABASES.pop()
        else:
            name = f"sft_{label.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
            url = f"{postgres_server_url.rstrip('/')}/{name}"
            await ensure_postgres_database(url)
            _ALL_DATABASES.append(url)
        handed_out.append(url)
        return url

    yield _make
    for url in handed_out:
        if await _empty_database(url):
            _IDLE_DATABASES.append(url)


async def _empty_database(url: str) -> bool:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    target = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    try:
        # Connections a test left behind (a killed process, a leaked pool) would block the DROP SCHEMA.
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = $1 AND pid <> pg_backend_pid()", parsed.database)
        finally:
            await conn.close()
        conn = await asyncpg.connect(target)
        try:
            await conn.execute("SET lock_timeout = '5s'; DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()
        return True
    except Exception:  # noqa: BLE001 - whatever failed, it is not reusable: it is dropped with the rest at the end
        return False


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _ALL_DATABASES:
        asyncio.run(_drop_databases(list(_ALL_DATABASES)))
        _ALL_DATABASES.clear()
        _IDLE_DATABASES.clear()


async def _drop_databases(urls: list[str], concurrency: int = 4) -> None:
    from .db import drop_postgres_database

    limiter = asyncio.Semaphore(concurrency)

    async def _drop(url: str) -> None:
        async with limiter:
            try:
                await drop_postgres_database(url)
            except Exception:  # noqa: BLE001 - a leftover test database is harmless; never mask the tests' result
                pass

    await asyncio.gather(*(_drop(url) for url in urls))


async def refuse_connections(*database_urls: str, refuse: bool = True) -> int:
    """Make databases refuse new connections and cut the open ones (refuse=True), or accept them again: to a
    service that is PostgreSQL going away, while every other user of the server is left alone. Returns how
    many connections were cut."""
    import asyncpg
    from sqlalchemy.engine import make_url

    names = [make_url(url).database for url in database_urls]
    admin = make_url(database_urls[0]).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        for name in names:
            await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(not refuse).lower()}')
        if not refuse:
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()) AS cut", names))
    finally:
        await conn.close()


@pytest.fixture
async def database_url(make_database_url: Callable[[str], Awaitable[str]]) -> str:
    return await make_database_url("db")


@pytest.fixture
async def bus_namespace(amqp_url: str) -> AsyncIterator[str]:
    """A unique exchange/queue prefix; every queue and the exchange under it are deleted afterwards."""
    namespace = f"t{uuid.uuid4().hex[:10]}."
    yield namespace
    await delete_namespace(amqp_url, namespace)


# Retry queues are named by their delay; these cover the delays tests and the e2e harness use.
RETRY_DELAYS_TO_CLEAN = (50, 100, 200, 250, 400, 500, 1000, 2000, 3000, 5000, 30000)


async def delete_namespace(amqp_url: str, namespace: str) -> None:
    import aio_pika

    from .runner import SERVICES

    connection = await aio_pika.connect(amqp_url)
    try:
        # Deleting a queue or exchange that does not exist succeeds on RabbitMQ: one channel does it all.
        channel = await connection.channel()
        names = [f"{namespace}{s.name}.events" for s in SERVICES] + [f"{namespace}test.events"]
        for base in names:
            for suffix in ("", ".dlq", *(f".retry.{d}ms" for d in RETRY_DELAYS_TO_CLEAN)):
                await channel.queue_delete(base + suffix)
        await channel.exchange_delete(f"{namespace}salesflow.events")
    finally:
        await connection.close()


def service_test_settings(settings_cls: type[T], *, database_url: str, amqp_url: str | None = None,
                          namespace: str = "", **overrides: Any) -> T:
    """Settings for a service under test: fast retries and polling, real servers."""
    values: dict[str, Any] = {
        "environment": "test", "database_url": database_url, "amqp_url": amqp_url or "",
        "bus_namespace": namespace, "retry_delays_ms": [100, 200], "outbox_poll_interval_s": 0.2,
        # tests move a fake clock: work that falls due that way rings no commit, the safety-net poll finds it
        "worker_idle_poll_s": 0.5,
        "jwt_secret": DEV_JWT_SECRET, "log_level": "WARNING",
    }
    values.update(overrides)
    return settings_cls(**values)


@asynccontextmanager
async def running_app(app: Any, base_url: str = "http://testserver") -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, bus, relay, consumers) and give an HTTP client to it.

    Every answer is checked against the app's OpenAPI document (status declared, body valid against the
    declared schema): each service's tests are also tests of its published contract.
    """
    async with app.router.lifespan_context(app):
        transport = ContractCheckingTransport(httpx.ASGITransport(app=app), app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@asynccontextmanager
async def serving_over_http(app: Any, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Serve `app` (whose lifespan `running_app` already runs) over real HTTP on a free port; yields the port.
    For what only a real socket shows: a proxy in front, a browser."""
    import uvicorn

    from .runner import _EmbeddedServer

    port = free_port(host)
    server = _EmbeddedServer(uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


class LocalHttpServer:
    """An ASGI app served over real HTTP on 127.0.0.1:`port` (no lifespan, warnings only, no access log), started
    and stopped by separate calls: the fake outside parties of the tests (Mailchimp, an enrichment provider) that
    live from a fixture's set-up to its tear-down."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     lifespan="off", access_log=False))
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None, "not started"
        self._server.should_exit = True
        await self._task


def dies_with_test_run() -> None:
    """`preexec_fn` of a process a test starts (a service, a replica): the kernel sends it SIGTERM when the
    thread that started it ends. A test run that is killed (a timeout, CI's limit) would otherwise leave its
    services running, holding database connections and broker sockets for every later run on the machine.
    Start such processes from the main thread: a worker thread that ends would take them with it."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts, for the services' and the
    system's tests alike: it can answer 4xx (`fail_next`), answer slowly (`delay_s`) and run a fault at the worst
    moment, after taking the message and before the sender hears "250" (`on_accept`).

    What it keeps of a message is `keep`'s choice (the parsed message; a subclass may keep less)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller  # a test dependency only: imported when a sink is made

        self.messages: list[Any] = []
        self.fail_next = 0
        self.delay_s = 0.0
        self.receiving = 0  # messages that waited `delay_s`
        self.on_accept: Callable[[], Awaitable[None]] | None = None
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.delay_s:
            self.receiving += 1
            await asyncio.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            return "451 4.3.0 try again later"
        raw = envelope.original_content or envelope.content
        self.keep(email.message_from_bytes(raw, policy=email.policy.default), envelope)
        if self.on_accept is not None:
            await self.on_accept()
        return "250 OK"

    def keep(self, message: email.message.Message, envelope: Any) -> None:
        self.messages.append(message)

    def to(self, address: str) -> list[Any]:
        return [m for m in self.messages if address in str(m["To"])]

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ContractCheckingTransport(httpx.AsyncBaseTransport):
    """Fails the test (AssertionError) when an answer is not what the app's OpenAPI document declares."""

    def __init__(self, inner: httpx.AsyncBaseTransport, app: Any) -> None:
        self.inner = inner
        self.app = app
        app.openapi()  # built now, not during the first request a test may be timing

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from .contract import contract_violations

        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        violations = contract_violations(self.app, request.method, request.url.path, response.status_code,
                                         response.headers.get("content-type", ""), body)
        if violations:
            raise AssertionError(f"{request.method} {request.url.path} -> {response.status_code} breaks the "
                                 f"published contract: " + "; ".join(violations))
        return response


def make_token(org: str, role: Role = "admin", sub: str = "user-1", secret: str = DEV_JWT_SECRET) -> str:
    return mint_token(secret, sub=sub, org=org, role=role)


def auth_headers(org: str, role: Role = "admin", sub: str = "user-1", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(org, role, sub)}", **extra}


async def publish_envelope(bus: Any, envelope: Any) -> Any:
    """Publish an event through `bus` as another service's outbox relay would (event type as routing key)."""
    from .bus import OutgoingMessage

    await bus.publish(OutgoingMessage(event_id=str(envelope.id), event_type=envelope.type, body=envelope.to_json(),
                                      headers={"x-org-id": envelope.org_id}))
    return envelope


async def outbox_payloads(database: Any, event_type: str | None = None) -> list[dict[str, Any]]:
    """The events a service wrote to its outbox (oldest first), as JSON envelopes; only `event_type`'s if given."""
    import json

    import sqlalchemy as sa

    from .infra_tables import outbox_table

    async with database.session() as session:
        query = sa.select(outbox_table.c.payload).order_by(outbox_table.c.id)
        if event_type:
            query = query.where(outbox_table.c.event_type == event_type)
        return [json.loads(p) for p in (await session.execute(query)).scalars()]


def as_deliveries(envelopes: Iterable[Any]) -> list[tuple[bytes, dict[str, Any]]]:
    """The envelopes as the bus hands a batch to a dispatcher (`dispatcher.handle_batch`)."""
    return [(envelope.to_json(), {}) for envelope in envelopes]


async def statements_sent(database: Any, act: Callable[[], Awaitable[T]], *,
                          this_task_only: bool = True) -> tuple[T, list[str]]:
    """What `act` returned, and the SQL statements the service's engine sent meanwhile, in order, whitespace
    folded. By default only those sent by this task (the one `act` runs in, as a request or the bus's batch does),
    not the workers' and the relay's, which run in tasks of their own; `this_task_only=False` for work `act` hands
    to another task (a batcher), every task's (a test then keeps those it is about). BEGIN and COMMIT are not
    statements the driver is given.

    Fails when one of them is a statement SQLAlchemy cannot cache (a multi-row VALUES, say: it has no cache key,
    so it is compiled again at every execution): the paths these tests list are the hot ones, where every statement
    is to be built and compiled once (issue 21)."""
    import asyncio

    import sqlalchemy as sa
    from sqlalchemy.engine.interfaces import CacheStats

    engine = database.engine.sync_engine
    this_task = asyncio.current_task()
    sent: list[str] = []
    compiled_every_time: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, *args: Any) -> None:
        if not this_task_only or asyncio.current_task() is this_task:
            sent.append(" ".join(statement.split()))
            if getattr(context, "cache_hit", None) in (CacheStats.NO_CACHE_KEY, CacheStats.CACHING_DISABLED):
                compiled_every_time.append(sent[-1])

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        result = await act()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert not compiled_every_time, f"statements SQLAlchemy compiles at every execution: {compiled_every_time}"
    return result, sent


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns without raising an AssertionError, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


# Events that carry the whole lead share one version sequence per lead (the lead's own version).
_LEAD_SNAPSHOT_EVENTS = frozenset({"LeadCreated", "LeadUpdated"})


@dataclass
class ServiceUnderTest:
    """One running service in a test: its HTTP client, context and clock, and a feeder that publishes events to
    it as the other services' relays do. Each service's testkit subclasses it with its own API helpers."""

    client: httpx.AsyncClient
    context: Any
    clock: Any
    feeder: Any
    org: str = "org-a"
    versions: dict[tuple[str, str], int] = field(default_factory=dict)

    def headers(self, role: str = "admin", sub: str = "admin-1", org: str | None = None,
                **extra: str) -> dict[str, str]:
        return auth_headers(org or self.org, role, sub, **extra)  # type: ignore[arg-type]

    # ---------------------------------------------------------- events in
    def envelope(self, data: Any, subject_id: str, *, org: str | None = None, version: int | None = None) -> Any:
        """`data` as an envelope about `subject_id`; the subject version counts up per event kind and subject
        unless given (lead snapshots share the lead's)."""
        from .events import make_event

        key = ("lead" if data.event_type in _LEAD_SNAPSHOT_EVENTS else data.event_type, subject_id)
        if version is None:
            version = self.versions.get(key, 0) + 1
        self.versions[key] = max(self.versions.get(key, 0), version)
        return make_event(data, org_id=org or self.org, subject_id=subject_id, subject_version=version)

    async def send(self, envelope: Any) -> Any:
        """Through the broker, as the other services' relays do."""
        return await publish_envelope(self.feeder, envelope)

    async def dispatch(self, envelope: Any) -> Any:
        """Straight to the handlers (deterministic order), with the inbox and a real transaction."""
        await self.context.dispatcher.dispatch(envelope)
        return envelope

    # ---------------------------------------------------------- events out and state
    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return await outbox_payloads(self.context.database, event_type)

    async def rows(self, table: Any, *where: Any) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        async with self.context.database.session() as session:
            return [dict(r) for r in (await session.execute(sa.select(table).where(*where))).mappings().all()]


S = TypeVar("S", bound=ServiceUnderTest)


@asynccontextmanager
async def service_under_test(kind: type[S], app: Any, clock: Any, amqp_url: str, namespace: str) -> AsyncIterator[S]:
    """Run `app` (its lifespan) with a feeder on the same broker namespace; yields `kind` wrapping both."""
    from .bus import RabbitBus

    feeder = RabbitBus(amqp_url, namespace=namespace, client_name="test-feeder")
    await feeder.start()
    try:
        async with running_app(app) as client:
            yield kind(client=client, context=app.state.context, clock=clock, feeder=feeder)
    finally:
        await feeder.close()


# ---------------------------------------------------------------------------------------------------------------
# One service embedded in the test's process, for the fast service-layer tests (services/*/tests/service_layer)
@dataclass
class EmbeddedService:
    """A service as `make run` starts it with nothing configured (SQLite file, in-process bus) but without its
    HTTP app and background workers: tests call its use cases, hand events to its handlers and run its workers'
    ticks themselves, on a clock they move."""

    context: Any
    clock: Any
    told: list[Any]  # envelopes of the observed types that reached the in-process bus, oldest first

    def uow(self) -> Any:
        return self.context.uow()

    def session(self) -> Any:
        return self.context.database.session()

    async def dispatch(self, envelope: Any) -> Any:
        """Straight to the service's handlers (deterministic order), with the inbox and a real transaction."""
        await self.context.dispatcher.dispatch(envelope)
        return envelope

    async def events(self, org_id: str, *types: str, count: int) -> list[Any]:
        """The org's events of these types once `count` of them reached the bus (oldest first)."""
        async def arrived() -> list[Any]:
            found = [e for e in self.told if e.org_id == org_id and e.type in types]
            assert len(found) >= count, found
            return found
        return await eventually(arrived, timeout=15)  # returns as soon as they are there; generous for a loaded machine

    async def outbox(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return await outbox_payloads(self.context.database, event_type)


def embedded_settings(settings_cls: type[T], database_path: Any, **overrides: Any) -> T:
    """Test settings for an embedded service: its database is the SQLite file at `database_path`, no broker."""
    return service_test_settings(settings_cls, database_url=f"sqlite+aiosqlite:///{database_path}", **overrides)


@asynccontextmanager
async def embedded_service(definition: Any, clock: Any, observe: tuple[str, ...] = ()) -> AsyncIterator[
        EmbeddedService]:
    """Start the service of `definition` embedded (no workers, `clock` everywhere); events of the `observe`
    types published on its bus are collected in `told`."""
    import dataclasses

    from .app import ServiceContext
    from .bus import Subscription
    from .events import Envelope

    context = ServiceContext(dataclasses.replace(definition, workers=(), clock=clock), None)
    told: list[Any] = []

    async def listen(body: bytes, _headers: dict[str, Any]) -> None:
        told.append(Envelope.from_json(body))

    await context.start()
    try:
        if observe:
            await context.bus.subscribe(Subscription(queue="observer.events", event_types=observe, callback=listen))
        yield EmbeddedService(context, clock, told)
    finally:
        await context.stop()
