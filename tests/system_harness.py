"""Runs the whole system for cross-service tests, in either run mode.

Full mode (RunningSystem): each service a real process (uvicorn), each with its own fresh PostgreSQL database,
all on the real RabbitMQ under one test namespace. Processes can be killed (-9) and restarted mid-test.
Embedded mode (EmbeddedSystem): what `salesflow run` starts without servers configured — one process, the five
services sharing the in-process bus, each with its SQLite file — on free ports."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from salesflow_shared.db import drop_postgres_database, ensure_postgres_database
from salesflow_shared.runner import SERVICES, ServiceEntry
from salesflow_shared.testing import AMQP_URL, POSTGRES_URL, delete_namespace, dies_with_test_run, free_port


def wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float, name: str,
               log_path: Path | None = None) -> None:
    """Until the service process at `url` answers GET /readyz with 200; fails if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    tail = lambda: log_path.read_text()[-3000:] if log_path is not None else "(output not captured)"  # noqa: E731
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout}s: {tail()}")


@dataclass
class ServiceProcess:
    entry: ServiceEntry
    port: int
    database_url: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class RunningSystem:
    workdir: Path
    namespace: str = field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:8]}.")
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.services[name].url

    def start_all(self, timeout: float = 90) -> None:  # six processes migrating at once on 2 cores
        suffix = uuid.uuid4().hex[:8]
        for entry in SERVICES:
            database_url = f"{POSTGRES_URL}/sfe2e_{entry.package}_{suffix}"
            asyncio.run(ensure_postgres_database(database_url))
            env = {
                **os.environ,
                "SALESFLOW_ENVIRONMENT": "test",
                "SALESFLOW_DATABASE_URL": database_url,
                "SALESFLOW_AMQP_URL": AMQP_URL,
                "SALESFLOW_BUS_NAMESPACE": self.namespace,
                # A notification whose rep or lead details have not arrived waits through these, then is parked.
                "SALESFLOW_RETRY_DELAYS_MS": "[200, 1000, 5000, 30000]",
                "SALESFLOW_OUTBOX_POLL_INTERVAL_S": "0.5",
                "SALESFLOW_WORKER_IDLE_POLL_S": "1",
                "SALESFLOW_LOG_LEVEL": "WARNING",
                **self.extra_env.get(entry.name, {}),
            }
            self.services[entry.name] = ServiceProcess(entry, free_port(), database_url, env,
                                                       self.workdir / f"{entry.name}.log")
        for name in self.services:
            self.start(name, wait=False)
        for name in self.services:
            self.wait_ready(name, timeout)

    def start(self, name: str, wait: bool = True, timeout: float = 60) -> None:
        service = self.services[name]
        log = open(service.log_path, "ab")
        service.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", f"{service.entry.package}.entrypoints.http:create_app",
             "--host", "127.0.0.1", "--port", str(service.port), "--log-level", "warning"],
            env=service.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=dies_with_test_run)
        if wait:
            self.wait_ready(name, timeout)

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        service = self.services[name]
        assert service.process is not None
        wait_ready(service.process, service.url, timeout, name, service.log_path)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.services[name].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in self.services:
            self.kill(name, signal.SIGTERM)
        for service in self.services.values():
            try:
                asyncio.run(drop_postgres_database(service.database_url))
            except Exception:  # noqa: BLE001 - a leftover test database is harmless; never mask the tests' result
                pass
        asyncio.run(delete_namespace(AMQP_URL, self.namespace))

    def logs(self, name: str) -> str:
        return self.services[name].log_path.read_text()


@dataclass
class EmbeddedService:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class EmbeddedSystem:
    """The embedded mode in one process (SQLite files in `workdir/data`); `extra_env` per service is merged into
    the one environment (the services' settings have distinct names)."""

    workdir: Path
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, EmbeddedService] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "embedded.log"

    def url(self, name: str) -> str:
        return self.services[name].url

    def start_all(self, timeout: float = 60) -> None:
        self.services = {entry.name: EmbeddedService(free_port()) for entry in SERVICES}
        ports = {name: service.port for name, service in self.services.items()}
        env = {key: value for key, value in os.environ.items()
               if key not in ("SALESFLOW_AMQP_URL", "SALESFLOW_POSTGRES_URL", "SALESFLOW_DATABASE_URL")}
        env.update({"SALESFLOW_ENVIRONMENT": "test", "SALESFLOW_DATA_DIR": str(self.workdir / "data"),
                    "SALESFLOW_RETRY_DELAYS_MS": "[200, 1000, 5000, 30000]", "SALESFLOW_OUTBOX_POLL_INTERVAL_S": "0.5",
                    "SALESFLOW_LOG_LEVEL": "WARNING"})
        for values in self.extra_env.values():
            env.update(values)
        script = ("import asyncio, json, sys; from salesflow_shared.runner import run_embedded; "
                  "asyncio.run(run_embedded(ports=json.loads(sys.argv[1])))")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-c", script, json.dumps(ports)], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, preexec_fn=dies_with_test_run)
        for name, service in self.services.items():
            wait_ready(self.process, service.url, timeout, name, self.log_path)

    def stop_all(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def logs(self, name: str) -> str:
        return self.log_path.read_text()
