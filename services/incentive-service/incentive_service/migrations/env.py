from incentive_service.adapters.orm import metadata
from salesflow_shared.migrations import run_alembic_env

run_alembic_env(metadata)
