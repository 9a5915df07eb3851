"""Token buckets keyed by (form, client IP) with an injected clock; memory stays bounded.

Each take reports the bucket as the IETF RateLimit header fields describe it (draft-ietf-httpapi-ratelimit-
headers): the limit per minute, what remains now, and the seconds until the bucket is full again; a refused
take also says how long until one request is allowed (Retry-After).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Quota:
    allowed: bool
    limit: int  # requests per minute (the bucket's capacity)
    remaining: int  # whole requests left now
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until the next request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        """The RateLimit fields of an answer this bucket acted on (a refused one adds Retry-After)."""
        fields = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                  "RateLimit-Reset": str(self.reset_s)}
        if not self.allowed:
            fields["Retry-After"] = str(self.retry_after_s)
        return fields


class RateLimiter:
    def __init__(self, clock: Callable[[], float], max_keys: int = 50_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, per_minute: int, burst: int | None = None) -> bool:
        return self.take(key, per_minute, burst).allowed

    def take(self, key: str, per_minute: int, burst: int | None = None) -> Quota:
        capacity = float(burst if burst is not None else per_minute)
        rate = per_minute / 60.0
        now = self.clock()
        tokens, last = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return Quota(allowed=allowed, limit=int(capacity), remaining=int(tokens),
                     reset_s=math.ceil((capacity - tokens) / rate),
                     retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)))
