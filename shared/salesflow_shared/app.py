"""Assembling a service process: the FastAPI app, its lifespan and the objects that live as long as it.

A service's `bootstrap.py` describes itself with a `ServiceDefinition` (settings, routers, event handler map,
migrations, background workers); `create_service_app` turns that into a running app. In the embedded mode
the run command passes one in-process bus to all five apps; otherwise each app connects to RabbitMQ.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request

from .auth import AdminPrincipal, TokenVerifier
from .bus import EventBus, InMemoryBus, RabbitBus, Subscription
from .clock import Clock, SystemClock
from .consumer import EventDispatcher, HandlerMap
from .contract import document_contract, operation_id
from .db import STATEMENT_PATH, Database
from .errors import NotFound, install_error_handlers
from .event_hold_for_tests import EventHoldForTests
from .guards import reject_unstorable_text
from .logging import configure_logging
from .middleware import BodySizeLimitMiddleware, ConditionalGetMiddleware, CorrelationMiddleware, JsonLimitsMiddleware
from .migrations import run_migrations
from .observability import ServiceMetrics, health_router, install_request_metrics
from .outbox import OutboxRelay
from .settings import ServiceSettings
from .tracing import TracingMiddleware, configure_tracing
from .uow import CommittedEvents, RecordPublished, UnitOfWork
from .wakeup import CommitBell, commit_channel, current_worker, listen_for_commits

log = structlog.get_logger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
CollaboratorsT = TypeVar("CollaboratorsT")

Worker = Callable[["ServiceContext"], Awaitable[None]]


@dataclass
class ServiceDefinition:
    name: str
    settings: ServiceSettings
    routers: Sequence[APIRouter]
    migrations_path: Path
    event_handlers: HandlerMap = field(default_factory=dict)
    # Long-running loops (sweeps, schedulers) started with the process and cancelled at shutdown.
    workers: Sequence[Worker] = ()
    description: str = ""
    version: str = "0.1.0"
    # Handle deliveries in batches, one transaction each (for high-volume consumers whose handlers only
    # record: e.g. metrics-service's event log). Falls back to one by one when a batch fails.
    consume_in_batches: bool = False
    # With consume_in_batches: at most this many batches in hand at once (None: no limit; see Subscription).
    max_batches_in_flight: int | None = None
    # Event types an earlier version of this service consumed and this one no longer subscribes to: its queue is
    # unbound from them at start (see Subscription). A handler still registered for one takes what was queued
    # before the upgrade, so nothing already on its way is left unhandled.
    retired_event_types: Sequence[str] = ()
    # PostgreSQL settings every connection of the service runs with (Database's `session_settings`).
    database_settings: Mapping[str, str] = field(default_factory=dict)
    # The time every part of the service reads (a ManualClock in tests and simulations).
    clock: Clock = field(default_factory=SystemClock)
    # The service's own collaborators (clients, caches), built at start-up into one typed object the service
    # defines (e.g. lead-service's `Collaborators` dataclass); reached through the service's accessor, and
    # each one with an `aclose()` is closed at shutdown.
    collaborators: Callable[[ServiceContext], Awaitable[Any]] | None = None
    # Across processes of this service (PostgreSQL only): announce every unit of work's commit with NOTIFY on
    # the service's channel, and/or wake this process's workers on those notifications (see wakeup.py).
    announce_commits: bool = False
    listen_for_commits: bool = False
    # What the service records of its own events in the transaction that publishes them, instead of consuming
    # them back (lead-service: their timeline entries): called by every commit with the events it publishes.
    # It may take the commit's outbox rows (`UnitOfWork.take_outbox_rows`) to write them in its own statement.
    record_published: RecordPublished | None = None


_startup_heap_frozen = False


def freeze_startup_heap() -> None:
    """Once per process, after its first service has started: move everything alive (modules, compiled
    statements and schemas, the app, the pools) out of the cyclic garbage collector's reach (`gc.freeze`).
    Those objects live as long as the process, yet each full collection walked all of them again: measured in
    the services under load, a full collection cost 90-250 ms of CPU at once (a stall of every delivery in
    hand), 20-40 ms once frozen. Once only: a later start (the tests' many apps in one process) would also
    freeze the garbage cycles of what ran before it, which would then never be freed."""
    global _startup_heap_frozen
    if _startup_heap_frozen:
        return
    _startup_heap_frozen = True
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()


class ServiceContext:
    """What one service process holds: settings, database, bus, relay, dispatcher and metrics."""

    def __init__(self, definition: ServiceDefinition, bus: EventBus | None) -> None:
        self.definition = definition
        self.settings = definition.settings
        self.name = definition.name
        self.metrics = ServiceMetrics(definition.name)
        self.database = Database(self.settings.resolved_database_url, pool_size=self.settings.db_pool_size,
                                 session_settings=definition.database_settings)
        self.database.count_statements(self.metrics.db_statements, self.metrics.db_commits)
        self.owns_bus = bus is None
        self.bus: EventBus = bus if bus is not None else self._make_bus()
        self.relay = OutboxRelay(self.database, self.bus, self.metrics,
                                 batch_size=self.settings.outbox_batch_size,
                                 poll_interval_s=self.settings.outbox_poll_interval_s,
                                 retention_s=self.settings.outbox_retention_hours * 3600,
                                 mark_delay_s=self.settings.outbox_mark_delay_s,
                                 sweep_after_s=self.settings.outbox_sweep_after_s)
        hold = EventHoldForTests(self.settings.test_event_hold_dir, self.name) \
            if self.settings.test_event_hold_dir is not None else None
        self.dispatcher = EventDispatcher(definition.event_handlers, self.uow, self.metrics, hold=hold)
        self.clock: Clock = definition.clock
        self.collaborators: Any = None  # the service's typed collaborators (ServiceDefinition.collaborators)
        # Rung by this process's commits (and the service's NOTIFYs when listening): wakes idle workers.
        self.commits = CommitBell()
        self._listening = contextlib.AsyncExitStack()
        self._worker_tasks: list[asyncio.Task[None]] = []
        # Set at shutdown: workers finish the batch in hand and return (see `run_periodically`).
        self.stopping = asyncio.Event()

    @property
    def queue(self) -> str:
        return f"{self.name}.events"

    @property
    def subscribed_event_types(self) -> list[str]:
        """What the service's queue is bound to: the types it handles, but for the retired ones."""
        return [t for t in self.dispatcher.event_types if t not in self.definition.retired_event_types]

    def settings_as(self, kind: type[SettingsT]) -> SettingsT:
        """This service's own settings (its `Settings`, a `ServiceSettings` with the service's fields), typed."""
        if not isinstance(self.settings, kind):
            raise TypeError(f"{self.name} runs with {type(self.settings).__name__}, not {kind.__name__}")
        return self.settings

    def collaborators_as(self, kind: type[CollaboratorsT]) -> CollaboratorsT:
        """This service's collaborators (ServiceDefinition.collaborators, built at start-up), typed."""
        if not isinstance(self.collaborators, kind):
            raise RuntimeError(f"{self.name}'s {kind.__name__} are built when the service starts "
                               f"(found {type(self.collaborators).__name__})")
        return self.collaborators

    def _make_bus(self) -> EventBus:
        on_parked = lambda queue: self.metrics.dead_lettered.labels(queue).inc()  # noqa: E731
        if self.settings.amqp_url:
            return RabbitBus(self.settings.amqp_url, exchange=self.settings.event_exchange,
                             namespace=self.settings.bus_namespace, client_name=self.name, on_parked=on_parked)
        return InMemoryBus(on_parked=on_parked)

    def uow(self) -> UnitOfWork:
        announce = self.definition.announce_commits and self.database.dialect == "postgresql"
        return UnitOfWork(self.database, self.name, after_commit=self._committed,
                          notify_channel=commit_channel(self.name) if announce else None, clock=self.clock,
                          record_published=self.definition.record_published)

    def _committed(self, events: CommittedEvents) -> None:
        if events:
            self.relay.hand_over(events)
        if current_worker.get() is None:  # a worker's own commits ring only when its tick found work
            self.commits.ring()

    async def start(self) -> None:
        if self.settings.migrate_on_start:
            await run_migrations(self.database, self.definition.migrations_path, self.name)
        if self.owns_bus:
            await self.bus.start()
        if self.definition.collaborators is not None:
            self.collaborators = await self.definition.collaborators(self)
        if self.dispatcher.event_types:
            # With a bounded number of batches in hand, the broker is allowed one more batch's worth of
            # deliveries: they arrive while the last batch is handled and are the next one, instead of being
            # sent only once it is acked (a stall of a broker round trip and a batch's transfer each time).
            batches_in_hand = self.definition.max_batches_in_flight
            await self.bus.subscribe(Subscription(
                queue=self.queue, event_types=self.subscribed_event_types,
                callback=self.dispatcher.handle_message, retry_delays_ms=self.settings.retry_delays_ms,
                prefetch=self.settings.consumer_prefetch * (batches_in_hand + 1 if batches_in_hand else 1),
                batch_callback=self.dispatcher.handle_batch if self.definition.consume_in_batches else None,
                batch_size=self.settings.consumer_prefetch,
                max_batches_in_flight=self.definition.max_batches_in_flight,
                retired_event_types=self.definition.retired_event_types))
        self.relay.start()
        if self.definition.listen_for_commits and self.database.dialect == "postgresql":
            await self._listening.enter_async_context(
                listen_for_commits(self.database.url, commit_channel(self.name), self.commits))
        for worker in self.definition.workers:
            self._worker_tasks.append(asyncio.create_task(self._run_worker(worker), name=worker.__name__))
        log.info("service_started", service=self.name, mode="embedded" if self.settings.embedded else "full")
        freeze_startup_heap()

    async def _run_worker(self, worker: Worker) -> None:
        STATEMENT_PATH.set(worker.__name__)  # (this task's own context: the worker's statements count as its)
        while not self.stopping.is_set():
            try:
                await worker(self)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker_crashed", worker=worker.__name__)
                await self.sleep(1)

    async def sleep(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the service starts stopping; True while it keeps running."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async def wait_for_commit(self, woken: asyncio.Event, seconds: float) -> bool:
        """Wait until `woken` is set, `seconds` pass or the service starts stopping; True while it keeps running."""
        waiters = [asyncio.ensure_future(self.stopping.wait()), asyncio.ensure_future(woken.wait())]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        return not self.stopping.is_set()

    async def stop(self) -> None:
        # Order matters: stop taking messages, let in-flight ones and workers' current batches finish,
        # flush the outbox, then close. A worker still busy after the grace period is cancelled.
        if self.owns_bus:
            await self.bus.stop_consuming()
        self.stopping.set()
        if self._worker_tasks:
            _, pending = await asyncio.wait(self._worker_tasks, timeout=self.settings.shutdown_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        self._worker_tasks.clear()
        await self._listening.aclose()
        await self.relay.stop()
        if self.owns_bus:
            await self.bus.close()
        for value in (vars(self.collaborators).values() if self.collaborators is not None else ()):
            close = getattr(value, "aclose", None)
            if close is not None:
                await close()
        await self.database.dispose()

    async def readiness(self) -> dict[str, bool]:
        return {"database": await self.database.ping(), "broker": self.bus.is_healthy()}

    async def render_metrics(self) -> bytes:
        try:
            unsent, age = await self.relay.lag()
            self.metrics.outbox_unsent.set(unsent)
            self.metrics.outbox_oldest_age.set(age)
        except Exception:  # noqa: BLE001 - metrics must render even when the database is down, however it fails
            pass
        return self.metrics.render()


async def run_periodically(context: ServiceContext, tick: Callable[[], Awaitable[Any]], interval_s: float,
                           name: str = "worker", *, wake_on_commit: bool = False,
                           wake_when_told: bool = False) -> None:
    """The loop of every background worker: run `tick`, then wait `interval_s` — until the service stops.

    A tick that returns a truthy value (work was found) runs again at once, so a backlog drains without
    waiting. A failing tick is logged and retried after the interval. Shutdown never interrupts a tick:
    the loop ends after the one in hand (within the grace period).

    With `wake_on_commit`, an idle worker does not poll every `interval_s`: it sleeps until a commit in this
    process (or a NOTIFY, see wakeup.py) may have given it work, then ticks no sooner than `interval_s` after its
    last tick (a stream of commits costs one tick per interval); `worker_idle_poll_s` is the safety net (work
    that falls due with time, or written where no commit rings: picked up within it). With `wake_when_told`
    instead, only `context.commits.tell(name)` wakes it (the commits that give it work call it), so that a
    stream of commits that never does costs it nothing; the same safety net.
    """
    woken = context.commits.listener(name) if wake_on_commit else \
        context.commits.told(name) if wake_when_told else None
    while not context.stopping.is_set():
        started = time.monotonic()
        if woken is not None:
            woken.clear()  # commits from now on wake the next wait
        token = current_worker.set(name)
        failed = False
        try:
            busy = await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker_tick_failed", worker=name)
            busy, failed = False, True
        finally:
            current_worker.reset(token)
        if busy:
            context.commits.ring(source=name)  # what it wrote may be work for the other workers
            continue
        if woken is None or failed:
            if not await context.sleep(interval_s):
                return
            continue
        if not await context.wait_for_commit(woken, context.settings.worker_idle_poll_s):
            return
        rest = interval_s - (time.monotonic() - started)
        if rest > 0 and not await context.sleep(rest):
            return


def create_service_app(definition: ServiceDefinition, bus: EventBus | None = None) -> FastAPI:
    settings = definition.settings
    configure_logging(settings.log_level, settings.log_json)
    configure_tracing(settings.tracing_exporter, settings.tracing_endpoint, settings.tracing_sample_ratio)
    context = ServiceContext(definition, bus)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await context.start()
        try:
            yield
        finally:
            await context.stop()

    app = FastAPI(title=f"Salesflow {definition.name}", description=definition.description,
                  version=definition.version, lifespan=lifespan, generate_unique_id_function=operation_id)
    app.state.context = context
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    install_error_handlers(app)
    install_request_metrics(app, context.metrics)
    # Innermost first: the JSON shape is checked on a body whose size is already capped.
    app.add_middleware(ConditionalGetMiddleware)  # sees each answer as the route made it
    app.add_middleware(JsonLimitsMiddleware, max_depth=settings.max_json_depth, max_items=settings.max_json_items)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TracingMiddleware, service=definition.name)  # inside CorrelationMiddleware
    app.add_middleware(CorrelationMiddleware)
    app.include_router(health_router(context.readiness, context.render_metrics))
    app.include_router(dead_letter_router())
    for router in definition.routers:
        app.include_router(router, dependencies=[Depends(reject_unstorable_text)])
    document_contract(app)  # errors, security and headers are declared there, the same for every route
    return app


async def get_context(request: Request) -> ServiceContext:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
    context: ServiceContext = request.app.state.context
    return context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


async def get_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    async with request.app.state.context.uow() as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def dead_letter_router() -> APIRouter:
    """Inspect and replay this service's parked messages (works for both buses).

    An org's admin sees and replays only its own org's messages; operators use `salesflow dlq` for all.
    """
    router = APIRouter(prefix="/admin/dead-letters", tags=["admin"])

    async def own_parked(context: ServiceContext, org_id: str, limit: int) -> list[Any]:
        parked = await context.bus.list_parked(context.queue, limit=limit)
        return [p for p in parked if _org_of(p.body) == org_id]

    @router.get("", summary="Messages parked after their retries, with their last error")
    async def list_dead_letters(context: ContextDep, principal: AdminPrincipal, limit: Annotated[int, Query(
            ge=1, le=1000, description="How many parked messages to read (a limit outside 1..1000 is a 422)")] = 100,
    ) -> dict[str, Any]:
        parked = await own_parked(context, principal.org_id, limit)
        return {"items": [{"event_id": p.event_id, "event_type": p.event_type, "attempts": p.attempts,
                           "last_error": p.last_error, "parked_at": p.parked_at} for p in parked]}

    @router.post("/replay", summary="Send parked messages back to this service's queue")
    async def replay(context: ContextDep, principal: AdminPrincipal, event_id: str | None = None) -> dict[str, int]:
        wanted = [p.event_id for p in await own_parked(context, principal.org_id, 10_000)
                  if event_id is None or p.event_id == event_id]
        if event_id is not None and not wanted:
            raise NotFound(f"no parked message with event id {event_id}")
        count = 0
        for parked_id in wanted:
            count += await context.bus.replay_parked(context.queue, parked_id)
        return {"replayed": count}

    return router


def _org_of(body: bytes) -> str | None:
    try:
        org_id = json.loads(body).get("org_id")
    except (ValueError, AttributeError):
        return None
    return org_id if isinstance(org_id, str) else None
