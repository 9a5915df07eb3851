"""The service's HTTP API (DESIGN.md: /v1/templates, /v1/sequences, /v1/mailchimp, /v1/milestones, /v1/deliveries,
/v1/webhook-subscriptions)."""
from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["notification-service"])
