"""Event handlers, registered in one explicit map (each runs in its own transaction with the inbox).

metrics-service consumes every event type of the catalogue with one handler: append to the event log
(unique by event id) and, when the event is new, apply it to the read models.
"""
from salesflow_shared.consumer import HandlerMap
from salesflow_shared.events import Envelope, EventData
from salesflow_shared.events.catalogue import EVENT_TYPES
from salesflow_shared.uow import UnitOfWork

from .projections import project, record


async def on_event(data: EventData, envelope: Envelope, uow: UnitOfWork) -> None:
    if await record(uow.session, envelope):
        await project(uow.session, envelope, data)


EVENT_HANDLERS: HandlerMap = {event_type: [on_event] for event_type in EVENT_TYPES}
