"""Settings every service shares, read from `SALESFLOW_*` environment variables.

A service subclasses `ServiceSettings` to add its own. With no database or broker configured the service
runs in the embedded mode (SQLite file in the data folder, in-process bus); README.md lists every variable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "salesflow-development-secret-do-not-use-in-production"
_PLACEHOLDER_SECRETS = {DEV_JWT_SECRET, "changeme", "change-me", "secret"}
MIN_PRODUCTION_SECRET_LENGTH = 32


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALESFLOW_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    service_name: str = "salesflow"
    host: str = "127.0.0.1"
    port: int = 8000
    # SQLAlchemy async URL (postgresql+asyncpg://... or sqlite+aiosqlite:///...). Empty → embedded SQLite.
    database_url: str = ""
    data_dir: Path = Path("data")
    # Connections per process (and as many again under bursts, kept once opened): several services and
    # replicas share one server's max_connections.
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
    # The relay publishes what this process's commits hand it; it sweeps the outbox this often for rows no
    # process holds (a crashed replica's, a migration's backfill): only those older than
    # `outbox_sweep_after_s`, or written before the process started.
    outbox_poll_interval_s: float = 5.0
    outbox_sweep_after_s: float = 10.0
    # The "sent" marks of rows published from hand are written together, this long after the first confirm:
    # one UPDATE and commit for all of them. A crash before leaves them to a sweep (a copy consumers absorb), so
    # this is the window of events a crash publishes twice; at 2 leads/s 2 s instead of 0.5 s saved 2.3 of 37
    # commits per lead (bench/cpu_per_lead.py, docs/performance.md). Shorter than
    # `outbox_sweep_after_s`, or other replicas would sweep the rows a live one has published.
    outbox_mark_delay_s: float = 2.0
    # Workers woken by commits (run_periodically with wake_on_commit) look for work at least this often when
    # nothing woke them (work that falls due with time is picked up within it).
    worker_idle_poll_s: float = 10.0
    # Published outbox rows are deleted once this old (the broker has them; keeping them a while helps
    # investigations). 0 keeps them forever.
    outbox_retention_hours: float = 72.0
    migrate_on_start: bool = True
    # How long a stopping process lets workers finish the batch in hand before cancelling them.
    shutdown_grace_s: float = 20.0
    # HS256 key. Empty → the public development secret, but only outside production and only when no JWKS
    # is configured: each key source accepts only its own algorithms (auth.py).
    jwt_secret: str = ""
    # The HMAC algorithms accepted with jwt_secret (JWKS keys declare their own, asymmetric ones).
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["HS256"])
    jwks_url: str = ""
    jwt_audience: str = ""
    # Longer bearer tokens are refused (401) before they are parsed.
    max_token_bytes: int = 8192
    # Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For entries are believed: the
    # client is the right-most address that is not one of them (client_address.py).
    trusted_proxies: str = "127.0.0.1"
    # Every JSON body is refused (422) beyond this nesting depth or this many values, before any other work.
    max_json_depth: int = 32
    max_json_items: int = 100_000
    log_level: str = "INFO"
    log_json: bool = False
    max_body_bytes: int = 1_048_576
    # OpenTelemetry (tracing.py): none | console | otlp (OTLP/HTTP to tracing_endpoint, or OTEL_EXPORTER_OTLP_*).
    tracing_exporter: Literal["none", "console", "otlp"] = "none"
    tracing_endpoint: str = ""
    tracing_sample_ratio: float = 1.0
    # Cross-service tests only (event_hold_for_tests.py): a folder of hold files naming events to hold back from
    # a consuming service. Refused outside the test environment.
    test_event_hold_dir: Path | None = None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        from .client_address import parse_trusted_proxies

        parse_trusted_proxies(value)  # a ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _test_hooks_only_in_tests(self) -> ServiceSettings:
        if self.test_event_hold_dir is not None and self.environment != "test":
            raise ValueError("SALESFLOW_TEST_EVENT_HOLD_DIR holds events back for cross-service tests; it is "
                             "refused unless SALESFLOW_ENVIRONMENT=test")
        return self

    @model_validator(mode="after")
    def _marks_before_other_replicas_sweep(self) -> ServiceSettings:
        if self.outbox_mark_delay_s >= self.outbox_sweep_after_s:
            raise ValueError("SALESFLOW_OUTBOX_MARK_DELAY_S must be shorter than SALESFLOW_OUTBOX_SWEEP_AFTER_S: "
                             "other replicas sweep (and publish again) the rows still unmarked after that")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        if self.environment == "production":
            # Whatever else is configured: a JWKS does not make a public secret harmless.
            if self.jwt_secret.strip().lower() in _PLACEHOLDER_SECRETS:
                raise ValueError("SALESFLOW_JWT_SECRET is the development secret or a placeholder; production "
                                 "refuses it (set a random secret, or leave it empty and set SALESFLOW_JWKS_URL)")
            if self.jwt_secret and len(self.jwt_secret) < MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(f"SALESFLOW_JWT_SECRET must be at least {MIN_PRODUCTION_SECRET_LENGTH} "
                                 "characters in production")
            if not self.jwt_secret and not self.jwks_url:
                raise ValueError("production needs SALESFLOW_JWT_SECRET or SALESFLOW_JWKS_URL to verify tokens")
            if not self.database_url or not self.amqp_url:
                raise ValueError("production needs SALESFLOW_DATABASE_URL and SALESFLOW_AMQP_URL")
        return self

    @property
    def hmac_secret(self) -> str | None:
        """The key HS256 tokens are checked with, or None when HMAC tokens are not accepted at all.

        An explicitly configured secret that is not the development one is always used. The development
        secret is used only outside production and only when no JWKS is configured: with a JWKS, an HS256
        token signed with a public secret must never pass.
        """
        if self.jwt_secret and self.jwt_secret != DEV_JWT_SECRET:
            return self.jwt_secret
        if self.environment == "production" or self.jwks_url:
            return None
        return DEV_JWT_SECRET

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
