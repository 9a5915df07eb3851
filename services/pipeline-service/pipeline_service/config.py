from salesflow_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """pipeline-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    service_name: str = "pipeline-service"
    port: int = 8002
    # How often the overdue-task sweep and the nurturing reopen sweep run (seconds).
    overdue_sweep_interval_s: float = 30.0
    reopen_interval_s: float = 60.0
    # Run the sweeps in this process (every replica may; they are safe together).
    run_workers: bool = True
