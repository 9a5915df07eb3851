"""Background workers: they loop until shutdown, drain a backlog without waiting, and are never cut off in the
middle of a tick (a cancelled send could be a duplicate email)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from salesflow_shared.app import ServiceContext, ServiceDefinition, run_periodically
from salesflow_shared.settings import ServiceSettings
from salesflow_shared.testing import eventually, service_test_settings


def _context(tmp_path: Path, *workers, grace: float = 5.0, idle_poll: float = 10.0) -> ServiceContext:
    settings = service_test_settings(ServiceSettings, database_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
                                     service_name="workers", migrate_on_start=False, shutdown_grace_s=grace,
                                     worker_idle_poll_s=idle_poll)
    return ServiceContext(ServiceDefinition(name="workers", settings=settings, routers=[],
                                            migrations_path=Path("unused"), workers=list(workers)), None)


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
        while True:  # noqa: ASYNC110 - a worker that polls and never looks at the stop signal is the case tested
            await asyncio.sleep(0.05)

    context = _context(tmp_path, stubborn_worker, grace=0.2)
    await context.start()
    started = asyncio.get_running_loop().time()
    await context.stop()
    assert asyncio.get_running_loop().time() - started < 3


def _counting_worker(name: str, ticks: list[float], *, commits: bool = False, busy_once: list[bool] | None = None):
    """A worker woken by commits (interval 0.1 s) that records when it ticks; with `commits`, each tick commits a
    unit of work of its own; with `busy_once`, its next tick reports work found once."""
    async def worker(context: ServiceContext) -> None:
        async def tick() -> bool:
            ticks.append(asyncio.get_running_loop().time())
            if commits:
                async with context.uow() as uow:
                    await uow.commit()
            if busy_once:
                busy_once.clear()
                await asyncio.sleep(0.2)  # the work takes a while: the others are back asleep when it ends
                return True
            return False
        await run_periodically(context, tick, interval_s=0.1, name=name, wake_on_commit=True)
    worker.__name__ = name
    return worker


async def test_an_idle_worker_woken_by_commits_sleeps_until_a_commit_then_ticks_within_its_interval(tmp_path):
    ticks: list[float] = []
    context = _context(tmp_path, _counting_worker("woken", ticks), idle_poll=60)
    await context.start()
    try:
        await asyncio.sleep(0.6)
        assert len(ticks) == 1  # polling every 0.1 s would have ticked ~6 times
        committed_at = asyncio.get_running_loop().time()
        async with context.uow() as uow:  # e.g. an event handler that created work
            await uow.commit()

        async def woken() -> None:
            assert len(ticks) == 2
        await eventually(woken, timeout=2)
        assert ticks[1] - committed_at < 0.5
        await asyncio.sleep(0.4)
        assert len(ticks) == 2
    finally:
        await context.stop()


async def test_a_stream_of_commits_costs_one_tick_per_interval(tmp_path):
    ticks: list[float] = []
    context = _context(tmp_path, _counting_worker("throttled", ticks), idle_poll=60)
    await context.start()
    try:
        for _ in range(20):  # a commit every 0.05 s for a second
            async with context.uow() as uow:
                await uow.commit()
            await asyncio.sleep(0.05)
        assert 5 <= len(ticks) <= 12  # at most one per 0.1 s interval (plus the first), not one per commit
    finally:
        await context.stop()


async def test_idle_workers_do_not_wake_themselves_or_each_other_but_found_work_wakes_the_others(tmp_path):
    first: list[float] = []
    second: list[float] = []
    found: list[bool] = []
    context = _context(tmp_path, _counting_worker("first", first, commits=True, busy_once=found),
                       _counting_worker("second", second, commits=True), idle_poll=60)
    await context.start()
    try:
        await asyncio.sleep(0.6)
        assert (len(first), len(second)) == (1, 1)  # their own empty commits woke nobody
        found.append(True)  # the next tick of the first finds work
        async with context.uow() as uow:
            await uow.commit()
        await asyncio.sleep(0.6)
        # both woke (2, 2); the first found work and ran again at once (3), which woke the second again (3)
        assert (len(first), len(second)) == (3, 3)
    finally:
        await context.stop()


async def test_a_worker_woken_when_told_sleeps_through_other_commits(tmp_path):
    ticks: list[float] = []

    async def told_worker(context: ServiceContext) -> None:
        async def tick() -> bool:
            ticks.append(asyncio.get_running_loop().time())
            return False
        await run_periodically(context, tick, interval_s=0.1, name="told", wake_when_told=True)

    context = _context(tmp_path, told_worker, idle_poll=60)
    await context.start()
    try:
        await asyncio.sleep(0.3)
        for _ in range(5):  # e.g. event handlers' commits: nothing for this worker
            async with context.uow() as uow:
                await uow.commit()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert len(ticks) == 1
        context.commits.tell("told")  # e.g. after the commit that queued an import

        async def woken() -> None:
            assert len(ticks) == 2
        await eventually(woken, timeout=2)
    finally:
        await context.stop()


async def test_the_safety_net_poll_finds_work_nobody_rang_for(tmp_path):
    ticks: list[float] = []
    context = _context(tmp_path, _counting_worker("net", ticks), idle_poll=0.3)
    await context.start()
    try:
        await asyncio.sleep(1.0)
        assert 3 <= len(ticks) <= 5  # every 0.3 s
    finally:
        await context.stop()


async def test_a_worker_in_another_process_of_the_service_is_woken_by_notify(database_url):
    """The metrics projector in its own process: the consumer process announces its commits (NOTIFY), the
    projector process listens; nothing else wakes it (its safety-net poll is a minute here)."""
    ticks: list[float] = []

    def context_of(*workers, announce: bool = False, listen: bool = False) -> ServiceContext:
        settings = service_test_settings(ServiceSettings, database_url=database_url, service_name="workers",
                                         migrate_on_start=False, worker_idle_poll_s=60)
        return ServiceContext(ServiceDefinition(name="workers", settings=settings, routers=[],
                                                migrations_path=Path("unused"), workers=list(workers),
                                                announce_commits=announce, listen_for_commits=listen), None)

    writer = context_of(announce=True)
    projector = context_of(_counting_worker("projector", ticks), listen=True)
    await writer.start()
    await projector.start()
    try:
        async def listening() -> None:
            assert len(ticks) >= 1  # its first tick, and the one the listener rings once connected
        await eventually(listening, timeout=5)
        await asyncio.sleep(0.5)
        before = len(ticks)
        async with writer.uow() as uow:  # a separate process's commit
            await uow.commit()

        async def woken() -> None:
            assert len(ticks) == before + 1
        await eventually(woken, timeout=3)
    finally:
        await projector.stop()
        await writer.stop()


async def test_a_workers_statements_are_counted_under_its_name(tmp_path):
    async def tidy_worker(context: ServiceContext) -> None:
        async def tick() -> bool:
            async with context.database.session() as session:
                await session.execute(sa.text("SELECT 1"))
            return False
        await run_periodically(context, tick, interval_s=60, name="tidy")

    context = _context(tmp_path, tidy_worker)
    await context.start()
    try:
        async def counted() -> None:
            assert context.metrics.registry.get_sample_value(
                "salesflow_db_statements_total", {"path": "tidy_worker"}) == 1
        await eventually(counted, timeout=5)
    finally:
        await context.stop()
