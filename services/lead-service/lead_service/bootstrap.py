"""Wires lead-service together: settings, routes, event handlers, migrations, background workers."""
import time
from pathlib import Path
from typing import Any

from salesflow_shared.app import ServiceContext, ServiceDefinition

from .config import Settings
from .domain.ratelimit import RateLimiter
from .entrypoints.common import SetupCache
from .entrypoints.forms_api import FormCache, submission_sweeper
from .entrypoints.routes import router
from .service_layer.handlers import EVENT_HANDLERS

MIGRATIONS = Path(__file__).parent / "migrations"


async def build_extras(context: ServiceContext) -> dict[str, Any]:
    return {"setup_cache": SetupCache(), "form_cache": FormCache(), "rate_limiter": RateLimiter(time.monotonic)}


def build_definition(settings: Settings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        name="lead-service",
        settings=settings or Settings(),
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=EVENT_HANDLERS,
        extras=build_extras,
        workers=[submission_sweeper],
        description="Leads, contacts, companies, activities, web-form intake, scoring and enrichment.",
    )
