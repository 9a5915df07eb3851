"""Wires lead-service together: settings, routes, event handlers, migrations, background workers."""
import time
from pathlib import Path

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.consumer import EventHandlers

from .adapters.enrichment_client import EnrichmentClient
from .collaborators import Collaborators
from .config import Settings
from .domain.ratelimit import RateLimiter
from .entrypoints.common import SetupCache
from .entrypoints.forms_api import FormCache
from .entrypoints.routes import router
from .service_layer.enrichment import enrichment_worker
from .service_layer.handlers import EVENT_HANDLERS
from .service_layer.imports import import_worker
from .service_layer.intake_batch import IntakeBatcher
from .service_layer.reprocessing import submission_sweeper
from .service_layer.timeline import OWN_TOLD_EVENTS, TIMELINE_HANDLERS, record_own_events

MIGRATIONS = Path(__file__).parent / "migrations"


async def build_collaborators(context: ServiceContext) -> Collaborators:
    settings = context.settings_as(Settings)
    enrichment = None
    if settings.enrichment_url:
        enrichment = EnrichmentClient(
            settings.enrichment_url, token=settings.enrichment_token, timeout_s=settings.enrichment_timeout_s,
            failure_threshold=settings.enrichment_failure_threshold,
            reset_after_s=settings.enrichment_reset_after_s)
    return Collaborators(setup_cache=SetupCache(), form_cache=FormCache(), rate_limiter=RateLimiter(time.monotonic),
                         intake_batcher=IntakeBatcher(context), enrichment_client=enrichment)


def build_definition(settings: Settings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        name="lead-service",
        settings=settings or Settings(),
        routers=[router],
        migrations_path=MIGRATIONS,
        # Every event about a lead also goes on its timeline (after this service's own handling); the entries of
        # this service's own events are written by the transaction that publishes them (not consumed back).
        event_handlers=EventHandlers.merged(EVENT_HANDLERS, TIMELINE_HANDLERS),
        record_published=record_own_events,
        # Consumed back for the timeline before their entries were written at publication: not subscribed to
        # any more (a deployed queue still bound to them is unbound at start).
        retired_event_types=tuple(sorted(OWN_TOLD_EVENTS)),
        # Deliveries in batches, one transaction each: a message's two handlers (its own and the timeline's)
        # share one inbox statement and one commit, and a batch's timeline entries are one insert. A failed
        # batch is handled again one message at a time, each handler in its own transaction, so one handler's
        # failure never holds back the other's effect.
        consume_in_batches=True,
        # One batch in hand at a time: under load the deliveries that arrive meanwhile form the next batch, and
        # two batches never lock the same leads in opposite orders.
        max_batches_in_flight=1,
        collaborators=build_collaborators,
        workers=[submission_sweeper, enrichment_worker, import_worker],
        description="Leads, contacts, companies, activities, web-form intake, scoring and enrichment.",
    )
