"""Token buckets keyed by (form, client IP) with an injected clock; memory stays bounded."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float], max_keys: int = 50_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, per_minute: int, burst: int | None = None) -> bool:
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
        return allowed
