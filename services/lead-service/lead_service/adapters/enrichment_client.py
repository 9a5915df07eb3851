"""The pluggable enrichment provider, called over HTTP with a timeout, behind a circuit breaker.

Protocol: `POST <url>` with `{"email": ..., "domain": ...}` (Bearer token if configured) → 200 with
`{"company": {"name", "size", "industry"}, "location": {"country", "region"}}` (any part may be missing),
or 404 when the provider knows nothing. Answers are untrusted: at most MAX_PROVIDER_ANSWER_BYTES are read, and
only the fields above survive, as printable strings within the lead's column sizes.
"""
from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ..domain.enrichment import MAX_PROVIDER_ANSWER_BYTES, CircuitBreaker, clean_provider_answer


class ProviderError(Exception):
    pass


class EnrichmentClient:
    def __init__(self, url: str, *, token: str = "", timeout_s: float = 2.0, failure_threshold: int = 5,
                 reset_after_s: float = 30.0) -> None:
        self.url = url
        self.breaker = CircuitBreaker(time.monotonic, failure_threshold, reset_after_s)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), headers=headers)
        self.max_answer_bytes = MAX_PROVIDER_ANSWER_BYTES
        self.calls = 0

    async def lookup(self, email: str, domain: str) -> dict[str, Any] | None:
        """The provider's answer, cleaned (only known fields, bounded printable strings: see
        `clean_provider_answer`), None when it knows nothing; raises CircuitOpen or ProviderError (an
        answer over `max_answer_bytes` is one)."""
        self.breaker.before_call()
        self.calls += 1
        try:
            async with self._http.stream("POST", self.url, json={"email": email, "domain": domain}) as response:
                if response.status_code == 404:
                    self.breaker.record_success()
                    return None
                if response.status_code != 200:
                    self.breaker.record_failure()
                    raise ProviderError(f"provider answered {response.status_code}")
                body = await _read_at_most(response, self.max_answer_bytes)
        except httpx.HTTPError as exc:
            self.breaker.record_failure()
            raise ProviderError(f"{type(exc).__name__}: {exc}") from exc
        if body is None:
            # the provider is up but this answer is unusable: not a reason to pause calls for other leads
            self.breaker.record_success()
            raise ProviderError(f"provider answer larger than {self.max_answer_bytes} bytes")
        try:
            data = json.loads(body)
        except ValueError as exc:
            self.breaker.record_failure()
            raise ProviderError("provider answered with invalid JSON") from exc
        self.breaker.record_success()
        return clean_provider_answer(data)

    async def aclose(self) -> None:
        await self._http.aclose()


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it passes `limit` bytes (the rest is never read into memory)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
