"""Wires pipeline-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path

from salesflow_shared.app import ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock

from .config import Settings
from .entrypoints.calendar_api import router as calendar_router
from .entrypoints.routes import router
from .service_layer.handlers import make_event_handlers
from .service_layer.workers import overdue_worker, reopen_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or SystemClock()

    return ServiceDefinition(
        name="pipeline-service",
        settings=settings,
        routers=[router, calendar_router],
        migrations_path=MIGRATIONS,
        event_handlers=make_event_handlers(clock),
        # Deliveries in batches, one transaction each: the events a lead's change brings together (LeadCreated,
        # ActivityLogged and LeadUpdated; LeadRouted and LeadAssigned) share one inbox statement, one position lock
        # and one commit. A failed batch is handled again one message at a time.
        consume_in_batches=True,
        # One batch in hand at a time: under load the deliveries that arrive meanwhile form the next batch, and
        # two batches never lock the same leads in opposite orders.
        max_batches_in_flight=1,
        workers=[overdue_worker, reopen_worker] if settings.run_workers else [],
        description="Pipelines, stages, goals, stage tasks, lead positions and history.",
        clock=clock,
    )
