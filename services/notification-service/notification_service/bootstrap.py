"""Wires notification-service together: settings, routes, event handlers, migrations, background workers."""
from __future__ import annotations

from pathlib import Path

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock

from .adapters.mailchimp import MailchimpClients
from .adapters.mailer import SmtpMailer
from .adapters.webhooks import WebhookSender
from .collaborators import Collaborators
from .config import Settings
from .entrypoints.routes import router
from .service_layer.deliveries import DeliveryMetrics, delivery_worker
from .service_layer.handlers import build_event_handlers
from .service_layer.sequences import sequence_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or SystemClock()

    async def build_collaborators(context: ServiceContext) -> Collaborators:
        return Collaborators(
            delivery_metrics=DeliveryMetrics(context.metrics.registry),
            mailer=SmtpMailer(host=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_username,
                                 password=settings.smtp_password, starttls=settings.smtp_starttls,
                                 tls=settings.smtp_tls, timeout_s=settings.smtp_timeout_s,
                                 validate_certs=settings.smtp_validate_certs, ca_bundle=settings.smtp_ca_bundle,
                                 max_connections=settings.smtp_max_connections,
                                 idle_timeout_s=settings.smtp_connection_idle_s,
                                 messages_per_connection=settings.smtp_messages_per_connection),
            mailchimp=MailchimpClients(base_url=settings.mailchimp_base_url,
                                          max_connections=settings.mailchimp_max_connections,
                                          timeout_s=settings.mailchimp_timeout_s,
                                          max_retries=settings.mailchimp_max_retries,
                                          backoff_s=settings.mailchimp_backoff_s,
                                          backoff_max_s=settings.mailchimp_backoff_max_s),
            webhooks=WebhookSender(timeout_s=settings.webhook_timeout_s,
                                   allow_private_networks=settings.webhooks_may_reach_private_networks),
        )

    return ServiceDefinition(
        name="notification-service",
        settings=settings,
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=build_event_handlers(settings, clock),
        workers=[sequence_worker, delivery_worker],
        # Deliveries in batches, one transaction each: a lead's events that arrive together (a stage entry and the
        # stage's tasks; the lead and its assignment) share one inbox statement and one commit. A failed batch (a
        # notification whose rep or lead is not known yet) is handled again one message at a time, each handler
        # in its own transaction, as before.
        consume_in_batches=True,
        # One batch in hand at a time: under load the deliveries that arrive meanwhile form the next batch, and
        # two batches never lock the same leads in opposite orders.
        max_batches_in_flight=1,
        clock=clock,
        collaborators=build_collaborators,
        description="Email templates and sequences, Mailchimp sync, reminders and rep milestones.",
    )
