"""The HTTP entry point: `uvicorn --factory lead_service.entrypoints.http:create_app`."""
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from salesflow_shared.app import create_service_app
from salesflow_shared.bus import EventBus
from salesflow_shared.middleware import BodySizeLimitMiddleware

from ..bootstrap import build_definition
from ..config import Settings


class PathBodyLimit:
    """The shared body cap, with a larger one for CSV uploads (POST /v1/imports streams its body)."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int) -> None:
        self.default = BodySizeLimitMiddleware(app, max_bytes)
        self.upload = BodySizeLimitMiddleware(app, upload_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_upload = scope["type"] == "http" and scope.get("path") == "/v1/imports" and scope.get("method") == "POST"
        await (self.upload if is_upload else self.default)(scope, receive, send)


def create_app(settings: Settings | None = None, bus: EventBus | None = None) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(build_definition(settings), bus)
    limited: list[Any] = []
    for middleware in app.user_middleware:
        if middleware.cls is BodySizeLimitMiddleware:
            middleware = Middleware(PathBodyLimit, max_bytes=settings.max_body_bytes,
                                    upload_bytes=settings.max_import_bytes)
        limited.append(middleware)
    app.user_middleware[:] = limited
    return app
