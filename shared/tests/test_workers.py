"""Background workers: they loop until shutdown, drain a backlog without waiting, and are never cut off in the
middle of a tick (a cancelled send could be a duplicate email)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from salesflow_shared.app import ServiceContext, ServiceDefinition, run_periodically
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, service_test_settings


def _context(tmp_path: Path, worker, grace: float = 5.0) -> ServiceContext:
    settings = service_test_settings(ServiceSettings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
                                     service_name="workers", migrate_on_start=False, shutdown_grace_s=grace)
    return ServiceContext(ServiceDefinition(name="workers", settings=settings, routers=[],
                                            migrations_path=Path("unused"), workers=[worker]), None)


async def test_shutdown_lets_the_tick_in_hand_finish(tmp_path):
    events: list[str] = []
    started = asyncio.Event()

    async def slow_worker(context: ServiceContext) -> None:
        async def tick() -> bool:
            events.append("start")
            started.set()
            await asyncio.sleep(0.3)  # e.g. an SMTP conversation
            events.append("end")
            return False
        await run_periodically(context, tick, interval_s=60, name="slow")

    context = _context(tmp_path, slow_worker)
    await context.start()
    await asyncio.wait_for(started.wait(), 5)
    await context.stop()
    assert events == ["start", "end"]


async def test_busy_ticks_run_back_to_back_and_idle_ones_wait(tmp_path):
    backlog = [3]
    ticks = []

    async def draining_worker(context: ServiceContext) -> None:
        async def tick() -> bool:
            ticks.append(asyncio.get_running_loop().time())
            if backlog[0]:
                backlog[0] -= 1
                return True
            return False
        await run_periodically(context, tick, interval_s=60, name="drain")

    context = _context(tmp_path, draining_worker)
    await context.start()
    try:
        async def drained() -> None:
            assert len(ticks) == 4  # three busy ticks and the idle one, with no wait between them
        await eventually(drained, timeout=5)
        assert ticks[-1] - ticks[0] < 1.0
        await asyncio.sleep(0.2)
        assert len(ticks) == 4  # now it waits for the interval
    finally:
        await context.stop()


async def test_a_failing_tick_is_retried_and_the_worker_survives(tmp_path):
    outcomes = []

    async def flaky_worker(context: ServiceContext) -> None:
        async def tick() -> bool:
            outcomes.append(len(outcomes))
            if len(outcomes) == 1:
                raise RuntimeError("database went away")
            return False
        await run_periodically(context, tick, interval_s=0.05, name="flaky")

    context = _context(tmp_path, flaky_worker)
    await context.start()
    try:
        async def recovered() -> None:
            assert len(outcomes) >= 3
        await eventually(recovered, timeout=5)
    finally:
        await context.stop()


async def test_a_worker_that_ignores_shutdown_is_cancelled_after_the_grace_period(tmp_path):
    async def stubborn_worker(context: ServiceContext) -> None:
        while True:
            await asyncio.sleep(0.05)

    context = _context(tmp_path, stubborn_worker, grace=0.2)
    await context.start()
    started = asyncio.get_running_loop().time()
    await context.stop()
    assert asyncio.get_running_loop().time() - started < 3
