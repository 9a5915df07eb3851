"""Retrying with backoff, one way for every service.

- A retry inside one call (an HTTP request to Mailchimp, say) is a `tenacity` policy: `retrying_call()` gives
  the project's standard one (exponential backoff with jitter, a server's `Retry-After` honoured, a bounded
  number of attempts, only for failures marked as worth retrying).
- A retry that is stored and picked up by a worker later (an email delivery, an enrichment lookup) or a loop that
  must never stop (the outbox relay) needs only the delay: `backoff_s()`, the same curve.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt


def backoff_s(attempt: int, *, base_s: float, max_s: float, jitter: bool = False) -> float:
    """The delay before retry number `attempt` (1 for the first retry): base · 2^(attempt-1), at most max_s.

    With jitter the delay is drawn from [half, all] of that, so replicas that failed together do not retry
    together, while a retry never comes sooner than half the planned delay.
    """
    delay = min(base_s * 2.0 ** max(attempt - 1, 0), max_s)
    return delay * (0.5 + random.random() / 2) if jitter else delay  # noqa: S311 - jitter, not a secret


class RetryLater(Exception):
    """A failure worth retrying; `retry_after_s` is the wait the other side asked for (Retry-After), if any."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header given in seconds, else None (an HTTP date is left to the backoff)."""
    try:
        return max(float(header), 0.0) if header else None
    except ValueError:
        return None


def _wait(base_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, RetryLater) and failure.retry_after_s is not None:
            return min(failure.retry_after_s, max_s)
        return backoff_s(state.attempt_number, base_s=base_s, max_s=max_s, jitter=True)

    return wait


def retrying_call(*, attempts: int, base_s: float, max_s: float) -> AsyncRetrying:
    """`async for attempt in retrying_call(...): with attempt: ...` retries what raises RetryLater, at most
    `attempts` times in all, then re-raises the last RetryLater; any other exception passes at once."""
    return AsyncRetrying(stop=stop_after_attempt(max(attempts, 1)), wait=_wait(base_s, max_s),
                         retry=retry_if_exception_type(RetryLater), reraise=True)
