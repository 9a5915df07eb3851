"""The service's HTTP API (DESIGN.md: /v1/reports, /v1/quotas, /v1/forecasts)."""
from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["metrics-service"])
