"""The service's HTTP API (DESIGN.md: /v1/reps, /v1/teams, /v1/territories, /v1/routing-rules, /v1/assignments, /v1/routing)."""
from fastapi import APIRouter, Depends

from . import directory, routing
from .guards import reject_unstorable_text

router = APIRouter(prefix="/v1", tags=["assignment-service"], dependencies=[Depends(reject_unstorable_text)])
router.include_router(directory.router)
router.include_router(routing.router)
