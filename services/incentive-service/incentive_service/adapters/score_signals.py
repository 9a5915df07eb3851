"""Waking live leaderboard streams when a program's tallies change, instead of polling for it.

PostgreSQL: the scoring transaction notifies `SCORES_CHANNEL` with the program id (delivered at its commit), and
each process listens on one connection for all its streams, whichever replica scored. SQLite (the embedded mode,
one process): every commit of the process rings its `CommitBell`, which wakes every stream to look. Either way a
stream also looks every few seconds by itself: a safety net, should a notification be lost with a connection.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from salesflow_shared.app import ServiceContext
from salesflow_shared.wakeup import listen_for_commits

from .repository.programs import SCORES_CHANNEL


class ScoreSignals:
    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._closing = contextlib.AsyncExitStack()
        self._following: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, program_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever the program's tallies may have changed (clear it before each look)."""
        woken = asyncio.Event()
        self._watchers.setdefault(program_id, set()).add(woken)
        try:
            yield woken
        finally:
            watchers = self._watchers.get(program_id, set())
            watchers.discard(woken)
            if not watchers:
                self._watchers.pop(program_id, None)

    def ring(self, program_id: str = "") -> None:
        """Wake the streams of `program_id` ("": of every program)."""
        for watched, watchers in self._watchers.items():
            if not program_id or watched == program_id:
                for woken in watchers:
                    woken.set()

    async def start(self, context: ServiceContext) -> None:
        if context.database.dialect == "postgresql":
            await self._closing.enter_async_context(
                listen_for_commits(context.database.url, SCORES_CHANNEL, on_notify=self.ring))
            return
        bell = context.commits.listener("leaderboard-streams")

        async def follow_commits() -> None:
            while True:
                await bell.wait()
                bell.clear()
                self.ring()

        self._following = asyncio.create_task(follow_commits(), name="leaderboard-streams")

    async def aclose(self) -> None:
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        await self._closing.aclose()
