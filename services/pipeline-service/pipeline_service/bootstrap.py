"""Wires pipeline-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path
from typing import Any

from salesflow_shared.app import ServiceContext, ServiceDefinition
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

    async def extras(context: ServiceContext) -> dict[str, Any]:
        return {"clock": clock}

    return ServiceDefinition(
        name="pipeline-service",
        settings=settings,
        routers=[router, calendar_router],
        migrations_path=MIGRATIONS,
        event_handlers=make_event_handlers(clock),
        workers=[overdue_worker, reopen_worker] if settings.run_workers else [],
        description="Pipelines, stages, goals, stage tasks, lead positions and history.",
        extras=extras,
    )
