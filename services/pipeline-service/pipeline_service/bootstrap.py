"""Wires pipeline-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path

from salesflow_shared.app import ServiceDefinition

from .config import Settings
from .entrypoints.routes import router
from .service_layer.handlers import EVENT_HANDLERS

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        name="pipeline-service",
        settings=settings or Settings(),
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=EVENT_HANDLERS,
        description="Pipelines, stages, goals, stage tasks, lead positions and history.",
    )
