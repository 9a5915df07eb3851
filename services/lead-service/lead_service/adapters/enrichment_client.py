"""The pluggable enrichment provider, called over HTTP with a timeout, behind a circuit breaker.

Protocol: `POST <url>` with `{"email": ..., "domain": ...}` (Bearer token if configured) → 200 with
`{"company": {"name", "size", "industry"}, "location": {"country", "region"}}` (any part may be missing),
or 404 when the provider knows nothing.
"""
from __future__ import annotations

import time
from typing import Any

import httpx

from ..domain.enrichment import CircuitBreaker


class ProviderError(Exception):
    pass


class EnrichmentClient:
    def __init__(self, url: str, *, token: str = "", timeout_s: float = 2.0, failure_threshold: int = 5,
                 reset_after_s: float = 30.0) -> None:
        self.url = url
        self.breaker = CircuitBreaker(time.monotonic, failure_threshold, reset_after_s)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), headers=headers)
        self.calls = 0

    async def lookup(self, email: str, domain: str) -> dict[str, Any] | None:
        """Provider data, None when it knows nothing; raises CircuitOpen or ProviderError."""
        self.breaker.before_call()
        self.calls += 1
        try:
            response = await self._http.post(self.url, json={"email": email, "domain": domain})
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            raise ProviderError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            self.breaker.record_success()
            return None
        if response.status_code != 200:
            self.breaker.record_failure()
            raise ProviderError(f"provider answered {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            self.breaker.record_failure()
            raise ProviderError("provider answered with invalid JSON") from exc
        self.breaker.record_success()
        return data if isinstance(data, dict) else None

    async def aclose(self) -> None:
        await self._http.aclose()
