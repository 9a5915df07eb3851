"""Outside parties for notification-service's tests, as real local servers on 127.0.0.1 (the SMTP server, which
the system's tests use too, is salesflow_shared.testing.SmtpSink):

- `FakeMailchimp`: the Marketing API v3 endpoints the service uses (member upsert / update / archive, tags),
  recording every call, answering 429/5xx on demand, with an optional latency, and counting concurrent
  requests; it also receives outbound webhooks at /hooks/{name}.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from salesflow_shared.testing import LocalHttpServer, free_port


# ---------------------------------------------------------------------------------------------- Mailchimp
@dataclass
class Call:
    method: str
    path: str
    json: Any
    auth: str | None
    client_port: int | None


@dataclass
class FakeMailchimp:
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    members: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Statuses the next requests answer with (429, 500, 503...), one per request, before normal service.
    fail_with: list[int] = field(default_factory=list)
    # Addresses Mailchimp refuses for good ("Member In Compliance State").
    compliance_blocked: set[str] = field(default_factory=set)
    latency_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    hooks: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    hook_fail_with: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/3.0"

    def calls_to(self, method: str, fragment: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and fragment in c.path]

    # -------------------------------------------------------------- endpoints
    async def _member(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            body = await request.json() if request.method in ("PUT", "PATCH", "POST") else None
            self.calls.append(Call(request.method, request.url.path, body, request.headers.get("authorization"),
                                   request.client.port if request.client else None))
            if not request.headers.get("authorization", "").startswith("Basic "):
                return _problem(401, "API Key Missing")
            if self.fail_with:
                status = self.fail_with.pop(0)
                return _problem(status, "Too Many Requests" if status == 429 else "Internal Server Error")
            return self._answer(request, body)
        finally:
            self.in_flight -= 1

    def _answer(self, request: Request, body: Any) -> Response:
        list_id = request.path_params["list_id"]
        member_hash = request.path_params["member_hash"]
        key = (list_id, member_hash)
        member = self.members.get(key)
        if request.url.path.endswith("/tags"):
            if member is None:
                return _problem(404, "Resource Not Found")
            for tag in body.get("tags", []):
                if tag["status"] == "active":
                    member["tags"].add(tag["name"])
                else:
                    member["tags"].discard(tag["name"])
            return Response(status_code=204)
        if request.method == "PUT":
            address = body["email_address"]
            if hashlib.md5(address.lower().encode()).hexdigest() != member_hash:
                return _problem(400, "Invalid Resource", "the subscriber hash does not match the email")
            if address.lower() in self.compliance_blocked:
                return _problem(400, "Member In Compliance State",
                                f"{address} is in a compliance state due to unsubscribe, bounce, or compliance review")
            if member is None:
                member = self.members[key] = {"email_address": address, "status": body.get("status_if_new"),
                                              "merge_fields": {}, "tags": set()}
            if body.get("status"):
                member["status"] = body["status"]
            member["merge_fields"].update(body.get("merge_fields") or {})
            return JSONResponse({**member, "id": member_hash, "tags": sorted(member["tags"])})
        if member is None:
            return _problem(404, "Resource Not Found")
        if request.method == "PATCH":
            member["status"] = body.get("status", member["status"])
            return JSONResponse({**member, "id": member_hash, "tags": sorted(member["tags"])})
        if request.method == "DELETE":
            member["status"] = "archived"
            return Response(status_code=204)
        return _problem(405, "Method Not Allowed")

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        if self.hook_fail_with:
            return Response(status_code=self.hook_fail_with.pop(0))
        self.hooks.append((request.path_params["name"], body, dict(request.headers)))
        return Response(status_code=204)

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        app = Starlette(routes=[
            Route("/3.0/lists/{list_id}/members/{member_hash}", self._member, methods=["PUT", "PATCH", "DELETE"]),
            Route("/3.0/lists/{list_id}/members/{member_hash}/tags", self._member, methods=["POST"]),
            Route("/hooks/{name}", self._hook, methods=["POST"]),
        ])
        self._http = LocalHttpServer(app, self.port)
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()


def _problem(status: int, title: str, detail: str | None = None) -> JSONResponse:
    return JSONResponse({"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title,
                         "status": status, "detail": detail or title, "instance": ""}, status_code=status,
                        media_type="application/problem+json")
