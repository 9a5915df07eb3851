"""Things every route module uses: org setup cache, clock, and small response helpers."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.responses import JSONResponse

from salesflow_shared.app import ServiceContext
from salesflow_shared.pagination import Page

from ..collaborators import collaborators
from ..config import Settings
from ..service_layer.ingest import OrgSetup, load_org_setup

T = TypeVar("T")


class SetupCache:
    """Scoring rules and custom field definitions per org, cached briefly (changes here invalidate at once;
    other replicas see them within `ttl_s`)."""

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, OrgSetup]] = {}

    async def get(self, session: Any, org_id: str, provider: bool) -> OrgSetup:
        hit = self._entries.get(org_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        setup = await load_org_setup(session, org_id, provider)
        self._entries[org_id] = (time.monotonic(), setup)
        return setup

    def invalidate(self, org_id: str) -> None:
        self._entries.pop(org_id, None)


def setup_cache(context: ServiceContext) -> SetupCache:
    cache = collaborators(context).setup_cache
    return cache


async def org_setup(context: ServiceContext, session: Any, org_id: str) -> OrgSetup:
    return await setup_cache(context).get(session, org_id, bool(context.settings_as(Settings).enrichment_url))


def page_body(page: Page[T], shape: Callable[[T], Any]) -> dict[str, Any]:
    """A page in the one list envelope, each item in its API shape."""
    return {"items": [shape(item) for item in page.items], "next_cursor": page.next_cursor}


def etag_header(body: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{body["version"]}"'}


def json_with_etag(body: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=etag_header(body))
