"""Event handlers, registered by event class in EVENT_HANDLERS (each runs in its own transaction with the inbox).

metrics-service consumes every event type of the catalogue with one handler that appends the event to its
log (unique by event id). The projector worker (service_layer/projector.py) applies the log to the read
models in batches, right after.
"""
from salesflow_shared.consumer import EventHandlers
from salesflow_shared.events import Envelope, EventData
from salesflow_shared.events.catalogue import ALL_EVENT_MODELS
from salesflow_shared.uow import UnitOfWork

from .projections import record, record_many


async def on_event(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
    await record(uow.session, envelope, uow.clock.now())


async def _on_events(items: list[tuple[EventData, Envelope]], uow: UnitOfWork) -> set[str]:
    return await record_many(uow.session, [envelope for _, envelope in items], uow.clock.now())


on_event.handle_many = _on_events  # type: ignore[attr-defined]  # a delivered batch: one INSERT
# The log is unique by event id, so it is this handler's inbox: a batch writes no inbox rows for it (one
# statement per batch instead of two); `_on_events` returns the events logged for the first time.
on_event.claims_itself = True  # type: ignore[attr-defined]


EVENT_HANDLERS = EventHandlers()
EVENT_HANDLERS.add_each(ALL_EVENT_MODELS, on_event)
