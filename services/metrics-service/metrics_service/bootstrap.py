"""Wires metrics-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path
from typing import Any

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.consumer import EventHandlers

from .config import Settings
from .domain.periods import Clock, system_clock
from .entrypoints.routes import router
from .service_layer.forecasting import snapshot_worker
from .service_layer.handlers import EVENT_HANDLERS
from .service_layer.projector import projector_worker
from .service_layer.quota_milestones import quota_milestone_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or system_clock

    async def extras(context: ServiceContext) -> dict[str, Any]:
        return {"clock": clock}

    workers = []
    if settings.projector != "separate":
        workers.append(projector_worker(settings.projector_batch_size, settings.projector_idle_interval_s))
    if settings.projector != "only":  # a projector-only process leaves the rest to the service's processes
        if settings.forecast_snapshot_interval_s > 0:
            workers.append(snapshot_worker(clock, settings.forecast_snapshot_interval_s))
        if settings.quota_milestone_interval_s > 0:
            workers.append(quota_milestone_worker(clock, settings.quota_milestone_interval_s,
                                                  settings.quota_milestone_lookback_days))
    return ServiceDefinition(
        name="metrics-service",
        settings=settings,
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=EventHandlers() if settings.projector == "only" else EVENT_HANDLERS,
        # Every event only appends to the log (the projector does the rest): one transaction per batch.
        consume_in_batches=True,
        # The projector in its own process is woken by the consumer process's commits (NOTIFY).
        announce_commits=settings.projector == "separate",
        listen_for_commits=settings.projector == "only",
        workers=workers,
        extras=extras,
        description="Read models and reports built only from events: funnel, win rate, forecast, coaching.",
    )
