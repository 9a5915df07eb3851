"""notification-service's collaborators: the outbound clients and metrics it builds once per process.

`bootstrap.py` builds them at start-up (ServiceDefinition.collaborators); code reaches them, typed, with
`collaborators(context)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from salesflow_shared.app import ServiceContext

if TYPE_CHECKING:  # the modules that use these import this one
    from .adapters.mailchimp import MailchimpClients
    from .adapters.mailer import SmtpMailer
    from .adapters.webhooks import WebhookSender
    from .service_layer.deliveries import DeliveryMetrics


@dataclass
class Collaborators:
    delivery_metrics: DeliveryMetrics
    mailer: SmtpMailer
    mailchimp: MailchimpClients
    webhooks: WebhookSender


def collaborators(context: ServiceContext) -> Collaborators:
    return context.collaborators_as(Collaborators)
