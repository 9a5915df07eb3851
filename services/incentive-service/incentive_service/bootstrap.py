"""Wires incentive-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path
from typing import Any

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock
from salesflow_shared.consumer import EventHandlers

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

    async def extras(context: ServiceContext) -> dict[str, Any]:
        return {"clock": clock}

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
        description="Commission plans as data, statements with every amount explained, payouts.",
        extras=extras,
    )
