"""Wires assignment-service together: settings, routes, event handlers, migrations, background workers."""
from pathlib import Path

from salesflow_shared.app import ServiceDefinition

from .config import Settings
from .entrypoints.routes import router
from .service_layer.handlers import EVENT_HANDLERS

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None) -> ServiceDefinition:
    return ServiceDefinition(
        name="assignment-service",
        settings=settings or Settings(),
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=EVENT_HANDLERS,
        # Deliveries in batches, one transaction each (one inbox statement, one commit): the handlers run one
        # after the other in delivery order on the same connection, each reading what the ones before it wrote
        # (the rotation's position, the reps' last assignments and open leads, the lead's row), so a batch decides
        # as the same deliveries one by one would. A failed batch is rolled back whole and handled again one
        # message at a time. A lone delivery goes at once; only deliveries that arrive while a batch is in hand
        # wait for it.
        consume_in_batches=True,
        # One batch in hand at a time: under load the deliveries that arrive meanwhile form the next batch, and
        # two batches of this consumer never take the same rotations and reps in opposite orders.
        max_batches_in_flight=1,
        description="Reps, teams, territories, routing rules and explainable assignment decisions.",
    )
