from salesflow_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """lead-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    service_name: str = "lead-service"
    port: int = 8001
    # Bodies above this size are refused everywhere except CSV uploads (imports have their own cap).
    max_body_bytes: int = 1_048_576
    max_submission_bytes: int = 65_536
    max_import_bytes: int = 200 * 1_048_576
    import_batch_size: int = 500
    # Browser posts: default per-form limit (each form may set its own) and the per-IP limit.
    form_rate_limit_per_minute: int = 600
    ip_rate_limit_per_minute: int = 30
    signature_tolerance_s: int = 300
    # Enrichment provider (empty → bundled lists only). POST {url} {"email","domain"} → JSON company data.
    enrichment_url: str = ""
    enrichment_token: str = ""
    enrichment_timeout_s: float = 2.0
    enrichment_failure_threshold: int = 5
    enrichment_reset_after_s: float = 30.0
    enrichment_max_attempts: int = 5
    enrichment_poll_interval_s: float = 2.0
    # Raw submissions left "received" this long (a crash mid-intake) are processed by the sweep.
    submission_sweep_after_s: float = 30.0
