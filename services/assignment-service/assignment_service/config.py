from salesflow_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """assignment-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    service_name: str = "assignment-service"
    port: int = 8003
