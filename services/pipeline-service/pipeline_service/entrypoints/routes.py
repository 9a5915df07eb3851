"""The service's HTTP API (DESIGN.md: /v1/pipelines, /v1/positions, /v1/tasks)."""
from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["pipeline-service"])
