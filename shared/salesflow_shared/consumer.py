"""Dispatching consumed events to a service's handlers, each in its own transaction with the inbox.

A service registers its handlers by event class in one `EventHandlers` registry:

    EVENT_HANDLERS = EventHandlers()

    @EVENT_HANDLERS.on(LeadAssignedV1)
    async def on_lead_assigned(data: LeadAssignedV1, envelope: Envelope, uow: UnitOfWork) -> None: ...

so a handler is typed by the event it takes (no narrowing with isinstance), and the registry is the map from
event type to handlers that the dispatcher reads.
A handler may also carry `handle_many(items, uow)`, used instead of one call per event when the service
consumes in batches (see `ServiceDefinition.consume_in_batches`). It runs once for the batch, outside any one
event's context (each event still gets its consumer span in its own trace), so it is for handlers that
record and publish nothing per event. A batch's inbox rows, of all its handlers, are claimed in one statement.
A `handle_many` handler whose own write is unique per event id (metrics-service's event log) may also set
`claims_itself = True`: no inbox row is written for it in a batch, and its `handle_many` returns the ids of the
events it took for the first time (the others were redeliveries).
Each handler gets the typed event data, the envelope and a unit of work; it must not commit (the
dispatcher commits after the handler returns, together with the inbox row and any events it published).
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import structlog
from pydantic import ValidationError

from .bus import PermanentFailure, TransientFailure
from .db import counted_as, is_database_outage, is_transaction_conflict
from .event_hold_for_tests import EventHoldForTests
from .events import Envelope, EventData, parse_data, utcnow
from .events.catalogue import UnknownEventType
from .inbox import claim_event, claim_for_handlers
from .logging import causation_id_var, correlation_id_var, traceparent_var
from .observability import ServiceMetrics
from .tracing import consumer_span, mark_consumed, traceparent_of
from .uow import UnitOfWork

log = structlog.get_logger(__name__)

# A handler is given the event data parsed into the class of the event type it is mapped under (the map's
# key), so it may declare that class (LeadWonV1, or a union for one handler under several types): hence
# Any, as a Callable taking EventData would refuse every handler narrower than that.
EventHandler = Callable[[Any, Envelope, UnitOfWork], Awaitable[None]]
HandlerMap = Mapping[str, Sequence[EventHandler]]
D = TypeVar("D", bound=EventData)
H = TypeVar("H", bound=Callable[..., Awaitable[None]])


class EventHandlers(Mapping[str, Sequence[EventHandler]]):
    """A service's event handlers keyed by event class; read by the dispatcher as event type → handlers.

    `add(LeadWonV1, on_lead_won)` or the decorator `@handlers.on(LeadWonV1)` (stack it for several classes).
    The dispatcher parses each event into the class registered for its type, so a handler typed with that
    class gets exactly it. Each handler runs in its own inbox transaction, in the order added.
    """

    def __init__(self) -> None:
        self._by_type: dict[str, list[EventHandler]] = {}

    def add(self, kind: type[D], handler: Callable[[D, Envelope, UnitOfWork], Awaitable[None]]) -> None:
        handlers = self._by_type.setdefault(kind.event_type, [])
        if handler not in handlers:  # once per event type (two versions of one type share their handlers)
            handlers.append(cast(EventHandler, handler))  # safe: the dispatcher hands it only `kind`'s events

    def add_each(self, kinds: Iterable[type[EventData]], handler: EventHandler) -> None:
        """One handler for many event classes (it takes any EventData: a log, a timeline)."""
        for kind in kinds:
            self.add(kind, handler)

    def on(self, kind: type[EventData]) -> Callable[[H], H]:
        def register(handler: H) -> H:
            self.add(kind, handler)
            return handler

        return register

    @classmethod
    def merged(cls, *registries: HandlerMap) -> EventHandlers:
        """One registry from several (each event type's handlers from every one, in the order given)."""
        merged = cls()
        for registry in registries:
            for event_type, handlers in registry.items():
                merged._by_type.setdefault(event_type, []).extend(handlers)
        return merged

    def __getitem__(self, event_type: str) -> Sequence[EventHandler]:
        return self._by_type[event_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)


def handler_name(handler: EventHandler) -> str:
    return f"{handler.__module__}.{getattr(handler, '__qualname__', repr(handler))}"


class EventDispatcher:
    def __init__(self, handlers: HandlerMap, uow_factory: Callable[[], UnitOfWork],
                 metrics: ServiceMetrics | None = None, hold: EventHoldForTests | None = None) -> None:
        self.handlers = handlers
        self.uow_factory = uow_factory
        self.metrics = metrics
        self.service = metrics.service if metrics is not None else "salesflow"
        # Test environment only (settings refuse it elsewhere): events a test holds back from this service.
        self.hold = hold

    @property
    def event_types(self) -> list[str]:
        return [t for t, hs in self.handlers.items() if hs]

    @counted_as("consumer")
    async def handle_message(self, body: bytes, headers: Mapping[str, Any]) -> None:
        try:
            envelope = Envelope.from_json(body)
            data = parse_data(envelope)
        except (ValidationError, UnknownEventType, ValueError) as exc:
            raise PermanentFailure(f"unreadable event: {exc}") from exc
        if self.hold is not None:
            self.hold.check(envelope)
        try:
            await self.dispatch(envelope, data, traceparent=_text(headers.get("traceparent")))
        except Exception as exc:
            transient = _as_transient(exc)
            if transient is None:
                raise
            raise transient from exc

    @counted_as("consumer")
    async def handle_batch(self, items: list[tuple[bytes, dict[str, Any]]]) -> None:
        """Handle many deliveries in one transaction (inbox rows, handlers' writes and events, one commit).

        Any failure raises, and the bus then hands each message to `handle_message` alone (a batch of one is
        settled with that failure: counted here as its attempt's outcome, `error`)."""
        parsed = []  # (envelope, its data, its id as text: computed once, it is looked up several times)
        traceparents: dict[str, str | None] = {}
        for body, headers in items:
            envelope = Envelope.from_json(body)
            if self.hold is not None:
                self.hold.check(envelope)  # the bus then hands each message to handle_message alone
            event_id = str(envelope.id)
            parsed.append((envelope, parse_data(envelope), event_id))
            traceparents[event_id] = _text(headers.get("traceparent"))
        started = time.perf_counter()
        try:
            async with self.uow_factory() as uow:
                names = {handler: handler_name(handler) for envelope, _, _ in parsed
                         for handler in self.handlers.get(envelope.type, ())}
                # Every handler's inbox rows in one statement (a self-claiming handler writes its own).
                claimed = await claim_for_handlers(uow.session, [
                    (names[handler], envelope) for envelope, _, _ in parsed
                    for handler in self.handlers.get(envelope.type, ()) if not _claims_itself(handler)])
                batches: dict[EventHandler, list[tuple[EventData, Envelope]]] = {}
                handled: set[str] = set()  # event ids some handler claimed (the rest were duplicates)
                given: set[tuple[str, str]] = set()  # (handler, event id) handed to a self-claiming handler
                for envelope, data, event_id in parsed:  # in delivery order
                    for handler in self.handlers.get(envelope.type, ()):
                        if _claims_itself(handler):  # tells which events were new after the batch, below
                            if (names[handler], event_id) not in given:  # a duplicate within the batch: once
                                given.add((names[handler], event_id))
                                batches.setdefault(handler, []).append((data, envelope))
                            continue
                        if (names[handler], event_id) in claimed:
                            claimed.discard((names[handler], event_id))  # a duplicate within the batch runs once
                            handled.add(event_id)
                            if hasattr(handler, "handle_many"):  # handled below, with the rest of the batch
                                batches.setdefault(handler, []).append((data, envelope))
                                mark_consumed(self.service, event_type=envelope.type, event_id=event_id,
                                              org_id=envelope.org_id, traceparent=traceparents[event_id])
                                continue
                            # Each event still shows in the trace it came with (as consumed in a batch), and
                            # what its handler publishes is caused by it, as when consumed alone.
                            with consumer_span(self.service, event_type=envelope.type, event_id=event_id,
                                               org_id=envelope.org_id,
                                               traceparent=traceparents[event_id]) as span, \
                                    _handling(envelope, traceparent_of(span)):
                                await handler(data, envelope, uow)
                for handler, batch in batches.items():
                    taken = await handler.handle_many(batch, uow)  # type: ignore[attr-defined]  # hasattr-checked
                    if _claims_itself(handler):
                        for _, envelope in batch:
                            event_id = str(envelope.id)
                            if event_id in taken:
                                handled.add(event_id)
                                mark_consumed(self.service, event_type=envelope.type, event_id=event_id,
                                              org_id=envelope.org_id, traceparent=traceparents[event_id])
                await uow.commit()
        except Exception as exc:
            if self.metrics and len(parsed) == 1:
                # A batch of one that fails is that delivery's attempt (the bus settles it with this failure and
                # does not hand it over again alone, as it does each delivery of a larger batch that failed).
                envelope = parsed[0][0]
                self.metrics.messages_handled.labels(envelope.type, "error").inc()
                self.metrics.message_latency.labels(envelope.type).observe(time.perf_counter() - started)
            transient = _as_transient(exc)
            if transient is None:
                raise
            raise transient from exc
        if self.metrics:
            elapsed = (time.perf_counter() - started) / max(len(parsed), 1)
            now = utcnow()
            for envelope, _, event_id in parsed:
                outcome = "ok" if event_id in handled else "duplicate"
                handled.discard(event_id)  # the same event twice in a batch: once ok, then duplicate
                self.metrics.messages_handled.labels(envelope.type, outcome).inc()
                self.metrics.message_latency.labels(envelope.type).observe(elapsed)
                self.metrics.event_delivery_lag.labels(envelope.type).observe(
                    max((now - envelope.occurred_at).total_seconds(), 0.0))

    async def dispatch(self, envelope: Envelope, data: EventData | None = None, *,
                       traceparent: str | None = None) -> None:
        data = data if data is not None else parse_data(envelope)
        # The handler's work, and the events it publishes, belong to the trace the event came with.
        with consumer_span(self.service, event_type=envelope.type, event_id=str(envelope.id),
                           org_id=envelope.org_id, traceparent=traceparent) as span:
            await self._dispatch(envelope, data, traceparent_of(span))

    async def _dispatch(self, envelope: Envelope, data: EventData, traceparent: str | None) -> None:
        started = time.perf_counter()
        if self.metrics:
            lag = (utcnow() - envelope.occurred_at).total_seconds()
            self.metrics.event_delivery_lag.labels(envelope.type).observe(max(lag, 0.0))
        outcome = "error"
        try:
            with _handling(envelope, traceparent):
                outcome = "duplicate"
                for handler in self.handlers.get(envelope.type, ()):
                    async with self.uow_factory() as uow:
                        if not await claim_event(uow.session, handler_name(handler), envelope):
                            continue
                        await handler(data, envelope, uow)
                        await uow.commit()
                        outcome = "ok"
        except BaseException:
            outcome = "error"
            raise
        finally:
            if self.metrics:
                self.metrics.messages_handled.labels(envelope.type, outcome).inc()
                self.metrics.message_latency.labels(envelope.type).observe(time.perf_counter() - started)


def _claims_itself(handler: EventHandler) -> bool:
    return getattr(handler, "claims_itself", False) is True and hasattr(handler, "handle_many")


@contextmanager
def _handling(envelope: Envelope, traceparent: str | None) -> Iterator[None]:
    """While one event is handled: events published are caused by it (correlation, causation, trace) and log
    lines name it."""
    tokens = (correlation_id_var.set(envelope.correlation_id or str(envelope.id)),
              causation_id_var.set(str(envelope.id)), traceparent_var.set(traceparent))
    try:
        with structlog.contextvars.bound_contextvars(event_id=str(envelope.id), event_type=envelope.type,
                                                     org_id=envelope.org_id, correlation_id=envelope.correlation_id):
            yield
    finally:
        correlation_id_var.reset(tokens[0])
        causation_id_var.reset(tokens[1])
        traceparent_var.reset(tokens[2])


def _as_transient(exc: Exception) -> TransientFailure | None:
    """The database unreachable, overloaded or restarting, or a transaction it rolled back to settle a conflict
    with concurrent work (a deadlock), is not the message's fault: such failures become TransientFailure
    (postponed, not counted towards parking); None for anything else."""
    if is_database_outage(exc) or is_transaction_conflict(exc):
        return TransientFailure(f"{type(exc).__name__}: {exc}")
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
