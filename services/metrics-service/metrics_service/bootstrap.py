"""Wires metrics-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path

from salesflow_shared.app import ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock
from salesflow_shared.consumer import EventHandlers

from .adapters.repository import REPORT_SETTINGS
from .config import Settings
from .entrypoints.routes import router
from .service_layer.forecasting import snapshot_worker
from .service_layer.handlers import event_handlers
from .service_layer.projector import Backlog, projector_worker
from .service_layer.quota_milestones import quota_milestone_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or SystemClock()

    workers = []
    # In one process, the consumer applies what it logs (the worker only what it could not); a consumer beside
    # a projector process ("separate") only logs, and that process ("only") applies everything.
    backlog = Backlog(settings.projector_batch_size) if settings.projector == "in-process" else None
    if settings.projector != "separate":
        workers.append(projector_worker(settings.projector_batch_size, settings.projector_idle_interval_s,
                                        backlog))
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
        event_handlers=EventHandlers() if settings.projector == "only" else event_handlers(backlog),
        # A delivered batch is logged (and applied) in one transaction.
        consume_in_batches=True,
        # Applying batches is one projector at a time: one batch in hand at once, so that a batch does not
        # find the turn taken by the one before and leave its events to the worker (another transaction).
        max_batches_in_flight=1 if backlog is not None else None,
        # The projector in its own process is woken by the consumer process's commits (NOTIFY).
        announce_commits=settings.projector == "separate",
        listen_for_commits=settings.projector == "only",
        workers=workers,
        # The reports' planner settings, on every connection (see repository.REPORT_SETTINGS).
        database_settings=REPORT_SETTINGS,
        clock=clock,
        description="Read models and reports built only from events: funnel, win rate, forecast, coaching.",
    )
