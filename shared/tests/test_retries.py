"""The one backoff curve and the tenacity policy every service retries with."""
from __future__ import annotations

import pytest

from salesflow_shared.retries import RetryLater, backoff_s, retry_after_seconds, retrying_call


def test_backoff_doubles_from_the_base_up_to_the_cap():
    assert [backoff_s(n, base_s=2.0, max_s=300.0) for n in (1, 2, 3, 8, 9, 20)] == [2, 4, 8, 256, 300, 300]
    for n in range(1, 12):
        jittered = backoff_s(n, base_s=0.5, max_s=30.0, jitter=True)
        assert backoff_s(n, base_s=0.5, max_s=30.0) / 2 <= jittered <= backoff_s(n, base_s=0.5, max_s=30.0)


def test_retry_after_in_seconds_only():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after_seconds("-3") == 0.0


async def test_retries_only_what_may_pass_and_gives_up_after_the_bound():
    calls: list[str] = []

    async def flaky() -> str:
        calls.append("x")
        if len(calls) < 3:
            raise RetryLater("HTTP 503", retry_after_s=0.0)
        return "ok"

    async for attempt in retrying_call(attempts=5, base_s=0.001, max_s=0.01):
        with attempt:
            result = await flaky()
    assert (result, len(calls)) == ("ok", 3)

    calls.clear()
    with pytest.raises(RetryLater, match="HTTP 503"):
        async for attempt in retrying_call(attempts=2, base_s=0.001, max_s=0.01):
            with attempt:
                await flaky()
    assert len(calls) == 2  # two attempts in all, then the last failure

    async def refused() -> None:
        calls.append("y")
        raise ValueError("HTTP 400")

    calls.clear()
    with pytest.raises(ValueError):
        async for attempt in retrying_call(attempts=5, base_s=0.001, max_s=0.01):
            with attempt:
                await refused()
    assert calls == ["y"]  # a permanent failure is never retried
