"""Wires notification-service together: settings, routes, event handlers, migrations, background workers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from salesflow_shared.app import ServiceContext, ServiceDefinition
from salesflow_shared.clock import Clock, SystemClock

from .adapters.mailchimp import MailchimpClients
from .adapters.mailer import SmtpMailer
from .adapters.webhooks import WebhookSender
from .config import Settings
from .entrypoints.routes import router
from .service_layer.deliveries import DeliveryMetrics, delivery_worker
from .service_layer.handlers import build_event_handlers
from .service_layer.sequences import sequence_worker

MIGRATIONS = Path(__file__).parent / "migrations"


def build_definition(settings: Settings | None = None, clock: Clock | None = None) -> ServiceDefinition:
    settings = settings or Settings()
    clock = clock or SystemClock()

    async def extras(context: ServiceContext) -> dict[str, Any]:
        return {
            "clock": clock,
            "delivery_metrics": DeliveryMetrics(context.metrics.registry),
            "mailer": SmtpMailer(host=settings.smtp_host, port=settings.smtp_port, username=settings.smtp_username,
                                 password=settings.smtp_password, starttls=settings.smtp_starttls,
                                 tls=settings.smtp_tls, timeout_s=settings.smtp_timeout_s,
                                 validate_certs=settings.smtp_validate_certs, ca_bundle=settings.smtp_ca_bundle),
            "mailchimp": MailchimpClients(base_url=settings.mailchimp_base_url,
                                          max_connections=settings.mailchimp_max_connections,
                                          timeout_s=settings.mailchimp_timeout_s,
                                          max_retries=settings.mailchimp_max_retries,
                                          backoff_s=settings.mailchimp_backoff_s,
                                          backoff_max_s=settings.mailchimp_backoff_max_s),
            "webhooks": WebhookSender(timeout_s=settings.webhook_timeout_s,
                                      allow_private_networks=settings.webhooks_may_reach_private_networks),
        }

    return ServiceDefinition(
        name="notification-service",
        settings=settings,
        routers=[router],
        migrations_path=MIGRATIONS,
        event_handlers=build_event_handlers(settings, clock),
        workers=[sequence_worker, delivery_worker],
        extras=extras,
        description="Email templates and sequences, Mailchimp sync, reminders and rep milestones.",
    )
