"""Waking background workers when there may be work, instead of polling for it.

Every commit of a unit of work in this process (an HTTP request, a consumed event) rings the process's
`CommitBell`; a worker waiting in `run_periodically` wakes, runs its tick, and with nothing found goes back to
sleep until the next ring — polling only as a slow safety net (`ServiceSettings.worker_idle_poll_s`). A tick's
own commits ring for the other workers only when it found work (so two idle workers never wake each other).
Across processes of one service (a projector in its own process), commits are announced with PostgreSQL
NOTIFY on the service's channel and `listen_for_commits` rings the bell of the listening process.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar

import structlog

log = structlog.get_logger(__name__)

# The worker whose tick is running in this task (None outside workers: requests, event handlers).
current_worker: ContextVar[str | None] = ContextVar("salesflow_current_worker", default=None)


class CommitBell:
    def __init__(self) -> None:
        self._listeners: dict[str, asyncio.Event] = {}
        self._told: dict[str, asyncio.Event] = {}

    def listener(self, name: str) -> asyncio.Event:
        """The event that `ring` sets for the worker `name` (it clears it before each tick)."""
        return self._listeners.setdefault(name, asyncio.Event())

    def told(self, name: str) -> asyncio.Event:
        """The event that only `tell(name)` sets (a worker whose work only one kind of commit gives, e.g. a
        queued import: the stream of other commits does not wake it)."""
        return self._told.setdefault(name, asyncio.Event())

    def tell(self, name: str) -> None:
        """Wake the worker `name` that waits to be told (after the commit that gave it work)."""
        self.told(name).set()

    def ring(self, source: str | None = None) -> None:
        """Wake every worker but `source` (the worker whose own commit this was)."""
        for name, event in self._listeners.items():
            if name != source:
                event.set()


def commit_channel(service: str) -> str:
    return "salesflow_commits_" + service.replace("-", "_")


@contextlib.asynccontextmanager
async def listen_for_commits(database_url: str, channel: str, bell: CommitBell | None = None, *,
                             on_notify: Callable[[str], None] | None = None) -> AsyncIterator[None]:
    """Ring `bell` on every NOTIFY on `channel` while inside, or hand `on_notify` each notification's payload
    ("" when (re)connected: anything may have changed meanwhile); a lost connection is reopened (the
    listeners' safety-net polls cover the gap)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    stop = asyncio.Event()
    if on_notify is None and bell is None:
        raise ValueError("listen_for_commits needs a bell to ring or an on_notify to call")
    notified = on_notify or (lambda _payload: bell.ring() if bell is not None else None)

    async def keep_listening() -> None:
        while not stop.is_set():
            try:
                connection = await asyncpg.connect(url)
            except Exception as exc:  # noqa: BLE001 - whatever kept the database away: try again shortly
                log.warning("commit_listener_unavailable", error=str(exc)[:200])
                await _wait(stop, 2.0)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _c, lost=lost: lost.set())
            try:
                await connection.add_listener(channel, lambda _c, _pid, _channel, payload: notified(payload))
                notified("")  # commits may have happened while nobody listened
                waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
            finally:
                if not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)

    task = asyncio.create_task(keep_listening(), name=f"listen-{channel}")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
