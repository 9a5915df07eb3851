from salesflow_shared.migrations import run_alembic_env, service_metadata

run_alembic_env(service_metadata("lead_service"))
