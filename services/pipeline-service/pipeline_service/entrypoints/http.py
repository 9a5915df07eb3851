"""The HTTP entry point: `uvicorn --factory pipeline_service.entrypoints.http:create_app`."""
from fastapi import FastAPI

from salesflow_shared.app import create_service_app
from salesflow_shared.bus import EventBus
from salesflow_shared.clock import Clock

from ..bootstrap import build_definition
from ..config import Settings


def create_app(settings: Settings | None = None, bus: EventBus | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(build_definition(settings, clock), bus)
