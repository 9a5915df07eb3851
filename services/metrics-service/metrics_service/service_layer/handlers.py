"""Event handlers, registered by event class in the registry `event_handlers` builds (each runs in its own
transaction with the inbox).

metrics-service consumes every event type of the catalogue with one handler that appends the event to its
log (unique by event id). When the projector runs in this process, a delivered batch is also applied to the
read models in the same transaction (`record_and_apply`); what it could not apply (another projector had the
turn) is left to the projector worker (service_layer/projector.py), told by the `Backlog`.
"""
from typing import Any

from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import Envelope, EventData
from salesflow_shared.events.catalogue import ALL_EVENT_MODELS
from salesflow_shared.uow import UnitOfWork

from .projections import record_and_apply, record_many
from .projector import Backlog


def event_handlers(backlog: Backlog | None) -> EventHandlers:
    """The handlers of every event type: log each event; with a `backlog` (the projector worker runs in this
    process), apply what is delivered at once too, and tell the worker of what was left for it."""

    async def record_events(envelopes: list[Envelope], uow: UnitOfWork) -> set[str]:
        if backlog is None:
            return await record_many(uow.session, envelopes, uow.clock.now())
        seen = backlog.seen()
        recorded = await record_and_apply(uow.session, envelopes, uow.clock.now(), drain=backlog.may_wait,
                                          batch_size=backlog.batch_size)
        backlog.after_commit(uow.session, recorded.left, seen if recorded.drained else None)
        return recorded.logged

    async def on_event(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
        await record_events([envelope], uow)

    async def on_events(items: list[tuple[EventData, Envelope]], uow: UnitOfWork) -> set[str]:
        return await record_events([envelope for _, envelope in items], uow)

    handle: Any = on_event
    handle.__qualname__ = "on_event"  # the name the inbox knows it by (consumer.handler_name), as before
    handle.handle_many = on_events  # a delivered batch: one INSERT (and its projection)
    # The log is unique by event id, so it is this handler's inbox: a batch writes no inbox rows for it (one
    # statement per batch instead of two); `on_events` returns the events logged for the first time.
    handle.claims_itself = True
    handlers = EventHandlers()
    handlers.add_each(ALL_EVENT_MODELS, on_event)
    return handlers
