"""The run command: all six services on their dev ports.

Embedded (no SALESFLOW_AMQP_URL / SALESFLOW_POSTGRES_URL): one process, six uvicorn servers sharing an
in-process bus, SQLite files in SALESFLOW_DATA_DIR (default ./data). Full: one process per service, each with
its own PostgreSQL database (created if missing) and RabbitMQ.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from .bus import InMemoryBus
from .db import ensure_postgres_database
from .settings import normalise_database_url


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    port: int
    package: str

    @property
    def database_name(self) -> str:
        return "salesflow_" + self.name.removesuffix("-service")

    def load_module(self, module: str) -> Any:
        return importlib.import_module(f"{self.package}.{module}")


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("lead-service", 8001, "lead_service"),
    ServiceEntry("pipeline-service", 8002, "pipeline_service"),
    ServiceEntry("assignment-service", 8003, "assignment_service"),
    ServiceEntry("notification-service", 8004, "notification_service"),
    ServiceEntry("metrics-service", 8005, "metrics_service"),
    ServiceEntry("incentive-service", 8006, "incentive_service"),
)


def find_service(name: str) -> ServiceEntry:
    for entry in SERVICES:
        if name in (entry.name, entry.name.removesuffix("-service"), entry.package):
            return entry
    raise SystemExit(f"unknown service {name!r}; one of: {', '.join(s.name for s in SERVICES)}")


class _EmbeddedServer(uvicorn.Server):
    # The servers share one loop: the runner, not each server, handles SIGINT/SIGTERM.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


async def run_embedded(host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> None:
    """`ports` (service name → port) replaces the dev ports, e.g. for tests sharing a machine."""
    bus = InMemoryBus()
    await bus.start()
    servers = []
    for entry in SERVICES:
        app = entry.load_module("entrypoints.http").create_app(bus=bus)
        port = (ports or {}).get(entry.name, entry.port)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        servers.append(_EmbeddedServer(config))
    loop = asyncio.get_running_loop()

    def stop_servers() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_servers)
    print("Salesflow (embedded mode: SQLite in", os.environ.get("SALESFLOW_DATA_DIR", "./data"),
          "and an in-process bus)", flush=True)
    for entry in SERVICES:
        print(f"  {entry.name:22} http://{host}:{(ports or {}).get(entry.name, entry.port)}  (docs: /docs)",
              flush=True)
    try:
        await asyncio.gather(*(s.serve() for s in servers))
    finally:
        await bus.close()


def run_full(postgres_url: str, host: str = "127.0.0.1") -> int:
    base = normalise_database_url(postgres_url).rstrip("/")
    processes: list[subprocess.Popen[bytes]] = []
    for entry in SERVICES:
        database_url = f"{base}/{entry.database_name}"
        asyncio.run(ensure_postgres_database(database_url))
        env = {**os.environ, "SALESFLOW_DATABASE_URL": database_url, "SALESFLOW_PORT": str(entry.port)}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{entry.package}.entrypoints.http:create_app",
             "--host", host, "--port", str(entry.port), "--log-level", "warning"], env=env))
        print(f"  {entry.name:22} http://{host}:{entry.port}  database {entry.database_name}", flush=True)

    def _forward(signum: int, _frame: Any) -> None:
        for process in processes:
            process.send_signal(signum)

    signal.signal(signal.SIGINT, _forward)
    signal.signal(signal.SIGTERM, _forward)
    codes = [p.wait() for p in processes]
    return max(codes)


def run(host: str = "127.0.0.1") -> int:
    amqp, postgres = os.environ.get("SALESFLOW_AMQP_URL"), os.environ.get("SALESFLOW_POSTGRES_URL")
    if amqp and postgres:
        print("Salesflow (full mode: PostgreSQL and RabbitMQ)", flush=True)
        return run_full(postgres, host)
    if amqp or postgres:
        raise SystemExit("set both SALESFLOW_AMQP_URL and SALESFLOW_POSTGRES_URL, or neither (embedded mode)")
    asyncio.run(run_embedded(host))
    return 0
