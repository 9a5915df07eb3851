"""lead-service's collaborators: the caches, limiter, intake batcher and enrichment client of one process.

`bootstrap.py` builds them at start-up (ServiceDefinition.collaborators); code reaches them, typed, with
`collaborators(context)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from salesflow_shared.app import ServiceContext

if TYPE_CHECKING:  # the modules that use these import this one
    from .adapters.enrichment_client import EnrichmentClient
    from .domain.ratelimit import RateLimiter
    from .entrypoints.common import SetupCache
    from .entrypoints.forms_api import FormCache
    from .service_layer.intake_batch import IntakeBatcher


@dataclass
class Collaborators:
    setup_cache: SetupCache
    form_cache: FormCache
    rate_limiter: RateLimiter
    intake_batcher: IntakeBatcher
    enrichment_client: EnrichmentClient | None  # None when no provider is configured


def collaborators(context: ServiceContext) -> Collaborators:
    return context.collaborators_as(Collaborators)
