"""Wires incentive-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path

from salesflow_shared.app import ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock
from salesflow_shared.consumer import EventHandlers

from .collaborators import build_collaborators
from .config import Settings
from .entrypoints.programs_api import router as programs_router
from .entrypoints.routes import router
from .service_layer.handlers import make_event_handlers
from .service_layer.program_handlers import make_program_handlers
from .service_layer.programs import program_finisher
from .service_layer.statements import recalculation_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or SystemClock()

    program_workers = ([program_finisher(clock, settings.program_finish_interval_s)]
                       if settings.program_finish_interval_s > 0 else [])
    return ServiceDefinition(
        name="incentive-service",
        settings=settings,
        routers=[router, programs_router],
        migrations_path=MIGRATIONS,
        event_handlers=EventHandlers.merged(make_event_handlers(clock), make_program_handlers(clock)),
        workers=([recalculation_worker(clock, settings.recalculation_interval_s, settings.recalculation_batch_size)]
                 if settings.recalculation_interval_s > 0 else []) + program_workers,
        # Deliveries in batches, one transaction each: a busy program's events are scored a batch at a time
        # (programs' facts handler has handle_many); other handlers run one by one inside the batch.
        consume_in_batches=True,
        # One batch in hand at a time: under load the deliveries that arrive meanwhile form the next batch, so a
        # busy program costs a few large transactions instead of many small ones contending for its scores.
        max_batches_in_flight=1,
        collaborators=build_collaborators,
        description="Commission plans as data, statements with every amount explained, payouts.",
        clock=clock,
    )
