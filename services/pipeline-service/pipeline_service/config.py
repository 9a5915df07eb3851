from pydantic_settings import SettingsConfigDict

from salesflow_shared.settings import ServiceSettings


class Settings(ServiceSettings):
    """pipeline-service settings: the shared `SALESFLOW_*` variables plus this service's own."""

    model_config = SettingsConfigDict(env_prefix="SALESFLOW_", extra="ignore")

    service_name: str = "pipeline-service"
    port: int = 8002
