"""Wires incentive-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path
from typing import Any

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock

from .config import Settings
from .entrypoints.routes import router
from .service_layer.handlers import make_event_handlers

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or SystemClock()

    async def extras(context: ServiceContext) -> dict[str, Any]:
        return {"clock": clock}

    return ServiceDefinition(
        name="incentive-service",
        settings=settings,
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=make_event_handlers(clock),
        workers=[],
        description="Commission plans as data, statements with every amount explained, payouts.",
        extras=extras,
    )
