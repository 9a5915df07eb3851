"""Settings every service shares, read from `SALESFLOW_*` environment variables.

A service subclasses `ServiceSettings` to add its own. With no database or broker configured the service
runs in the embedded mode (SQLite file in the data folder, in-process bus); README.md lists every variable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "salesflow-development-secret-do-not-use-in-production"
_PLACEHOLDER_SECRETS = {DEV_JWT_SECRET, "changeme", "change-me", "secret", ""}


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALESFLOW_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    service_name: str = "salesflow"
    host: str = "127.0.0.1"
    port: int = 8000
    # SQLAlchemy async URL (postgresql+asyncpg://... or sqlite+aiosqlite:///...). Empty → embedded SQLite.
    database_url: str = ""
    data_dir: Path = Path("data")
    # Connections per process (and as many again under bursts): several services and replicas share one
    # server's max_connections.
    db_pool_size: int = 5
    # AMQP URL. Empty → the in-process bus (embedded mode only).
    amqp_url: str = ""
    # Prefix for exchange and queue names: lets several isolated systems (or test runs) share one broker.
    bus_namespace: str = ""
    event_exchange: str = "salesflow.events"
    consumer_prefetch: int = 32
    # Growing delays between redeliveries of a failed message; after the last one it is parked.
    retry_delays_ms: list[int] = Field(default_factory=lambda: [1000, 5000, 30000])
    outbox_batch_size: int = 200
    # The relay is woken by this process's commits that wrote events; it also looks this often (a safety net:
    # rows left by a crashed replica, a failed publish).
    outbox_poll_interval_s: float = 5.0
    # Workers woken by commits (run_periodically with wake_on_commit) look for work at least this often when
    # nothing woke them (work that falls due with time is picked up within it).
    worker_idle_poll_s: float = 10.0
    # Published outbox rows are deleted once this old (the broker has them; keeping them a while helps
    # investigations). 0 keeps them forever.
    outbox_retention_hours: float = 72.0
    migrate_on_start: bool = True
    # How long a stopping process lets workers finish the batch in hand before cancelling them.
    shutdown_grace_s: float = 20.0
    jwt_secret: str = DEV_JWT_SECRET
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwks_url: str = ""
    jwt_audience: str = ""
    log_level: str = "INFO"
    log_json: bool = False
    max_body_bytes: int = 1_048_576
    # OpenTelemetry (tracing.py): none | console | otlp (OTLP/HTTP to tracing_endpoint, or OTEL_EXPORTER_OTLP_*).
    tracing_exporter: Literal["none", "console", "otlp"] = "none"
    tracing_endpoint: str = ""
    tracing_sample_ratio: float = 1.0

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> "ServiceSettings":
        if self.environment == "production":
            if self.jwt_secret in _PLACEHOLDER_SECRETS and not self.jwks_url:
                raise ValueError("SALESFLOW_JWT_SECRET must be set to a real secret in production")
            if len(self.jwt_secret) < 32 and not self.jwks_url:
                raise ValueError("SALESFLOW_JWT_SECRET must be at least 32 characters in production")
            if not self.database_url or not self.amqp_url:
                raise ValueError("production needs SALESFLOW_DATABASE_URL and SALESFLOW_AMQP_URL")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{self.service_name}.db').resolve()}"

    @property
    def embedded(self) -> bool:
        return not self.amqp_url


def normalise_database_url(url: str) -> str:
    """Accept the plain `postgresql://` form operators write and use the async driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://"):]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://"):]
    return url
