"""The service's HTTP API (docs/architecture.md: /v1/reps, /v1/teams, /v1/territories, /v1/routing-rules,
/v1/assignments, /v1/routing)."""
from fastapi import APIRouter

from . import directory, routing

router = APIRouter(prefix="/v1", tags=["assignment-service"])
router.include_router(directory.router)
router.include_router(routing.router)
