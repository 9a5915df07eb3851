from pydantic import Field, model_validator

from salesflow_shared.settings import DEV_JWT_SECRET, ServiceSettings


class Settings(ServiceSettings):
    """notification-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    service_name: str = "notification-service"
    port: int = 8004

    # SMTP relay (SALESFLOW_SMTP_*). `smtp_tls` = implicit TLS (port 465); `smtp_starttls` = upgrade after EHLO.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_s: float = 30.0
    smtp_validate_certs: bool = True
    # PEM file of CAs to trust for the relay's certificate (empty: the system store).
    smtp_ca_bundle: str = ""
    # Connections are kept between messages (adapters/mailer.py): at most this many open, each closed after this
    # long unused (relays drop idle clients) and after this many messages (relays cap it).
    smtp_max_connections: int = Field(default=10, ge=1)
    smtp_connection_idle_s: float = Field(default=30.0, gt=0)
    smtp_messages_per_connection: int = Field(default=100, ge=1)
    smtp_from: str = "Salesflow <no-reply@salesflow.local>"
    # Right-hand side of the stable Message-ID `<delivery-id@domain>`.
    message_id_domain: str = "salesflow.local"

    # Where prospects reach the unsubscribe endpoint (the gateway's public URL).
    public_base_url: str = "http://127.0.0.1:8004"
    # Signs unsubscribe links; empty → derived from SALESFLOW_JWT_SECRET (required in production without one).
    unsubscribe_secret: str = ""

    # Mailchimp Marketing API v3. Empty base URL → https://<dc>.api.mailchimp.com/3.0 from the key's suffix.
    mailchimp_base_url: str = ""
    mailchimp_max_connections: int = 10
    mailchimp_timeout_s: float = 10.0
    # In-call retries on 429/5xx/timeouts (then the delivery is retried later by the delivery worker).
    mailchimp_max_retries: int = 4
    mailchimp_backoff_s: float = 0.5
    mailchimp_backoff_max_s: float = 30.0

    webhook_timeout_s: float = 10.0
    # Whether webhook URLs may lead to loopback, private, link-local, multicast, reserved or unspecified
    # addresses (SSRF into the service's own network). Unset: only outside production, where local fake
    # servers receive the webhooks.
    webhook_allow_private_networks: bool | None = None

    # Background workers.
    scheduler_poll_interval_s: float = 1.0
    worker_batch_size: int = 50
    worker_concurrency: int = 20
    # A claimed delivery whose worker vanished is retried after this lease (see service_layer/deliveries.py).
    delivery_lease_s: float = 120.0
    # On shutdown, how long attempts already on the wire may take to finish and be recorded.
    delivery_shutdown_grace_s: float = 10.0
    delivery_max_attempts: int = 6
    delivery_retry_base_s: float = 30.0
    delivery_retry_max_s: float = 3600.0
    # A task reminder goes out this long before the task is due.
    task_reminder_lead_minutes: int = 60
    # Default business hours when a sequence does not set its own.
    default_business_timezone: str = "UTC"
    business_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0
    business_start_hour: int = 9
    business_end_hour: int = 17

    @property
    def webhooks_may_reach_private_networks(self) -> bool:
        if self.webhook_allow_private_networks is not None:
            return self.webhook_allow_private_networks
        return self.environment != "production"

    @property
    def resolved_unsubscribe_secret(self) -> str:
        # Outside production only, a JWKS-only setup falls back to the development secret (the validator
        # below makes production set one of the two).
        return self.unsubscribe_secret or f"unsubscribe:{self.hmac_secret or DEV_JWT_SECRET}"

    @model_validator(mode="after")
    def _unsubscribe_links_need_a_secret(self) -> "Settings":
        if self.environment == "production" and not self.unsubscribe_secret and self.hmac_secret is None:
            raise ValueError("with tokens verified by a JWKS only, production needs SALESFLOW_UNSUBSCRIBE_SECRET "
                             "(unsubscribe links must not be signed with the public development secret)")
        return self
