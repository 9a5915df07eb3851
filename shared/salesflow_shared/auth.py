"""JWT bearer authentication, org scoping and role checks (DESIGN.md, HTTP conventions).

Tokens carry `sub` (user id), `org` (the tenant) and `role` (admin, manager, rep). HS256 with
SALESFLOW_JWT_SECRET, or RS256 checked against SALESFLOW_JWKS_URL. Every query a service makes is scoped
by `principal.org_id`; another org's id is reported as not found, never as forbidden.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import jwt
from fastapi import Depends, Request

from .errors import Forbidden, Unauthorized
from .settings import ServiceSettings

Role = Literal["admin", "manager", "rep"]
ROLES: tuple[Role, ...] = ("admin", "manager", "rep")


@dataclass(frozen=True)
class Principal:
    user_id: str
    org_id: str
    role: Role

    @property
    def sees_whole_org(self) -> bool:
        return self.role in ("admin", "manager")


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self.secret = settings.jwt_secret
        self.algorithms = settings.jwt_algorithms
        self.audience = settings.jwt_audience or None
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg", "").startswith("RS") and self._jwks is not None:
                # PyJWKClient fetches with urllib; keep that off the event loop.
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                claims = jwt.decode(token, signing_key.key, algorithms=["RS256"], audience=self.audience,
                                    options={"require": ["sub", "exp"]})
            else:
                claims = jwt.decode(token, self.secret, algorithms=[a for a in self.algorithms if a.startswith("HS")],
                                    audience=self.audience, options={"require": ["sub", "exp"]})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        org, role = claims.get("org"), claims.get("role")
        if not isinstance(org, str) or not org:
            raise Unauthorized("token has no 'org' claim")
        if role not in ROLES:
            raise Unauthorized("token has no valid 'role' claim")
        return Principal(user_id=str(claims["sub"]), org_id=org, role=role)


def mint_token(secret: str, *, sub: str, org: str, role: Role, ttl_s: int = 3600 * 24,
               audience: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": sub, "org": org, "role": role, "iat": now, "exp": now + ttl_s}
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.verify(token.strip())
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def require_roles(*roles: Role):  # type: ignore[no-untyped-def]
    async def _check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"this action needs the role {' or '.join(roles)}")
        return principal
    return _check


AdminPrincipal = Annotated[Principal, Depends(require_roles("admin"))]
ManagerPrincipal = Annotated[Principal, Depends(require_roles("admin", "manager"))]
