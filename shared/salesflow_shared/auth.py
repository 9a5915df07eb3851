"""JWT bearer authentication, org scoping and role checks (docs/architecture.md, HTTP conventions).

Tokens carry `sub` (user id), `org` (the tenant) and `role` (admin, manager, rep). Two key sources, each
accepting only its own algorithms: a JWKS (SALESFLOW_JWKS_URL) verifies the asymmetric algorithm its key
declares (RS*, PS*, ES*, EdDSA), and an HMAC secret verifies HS256 only when one is configured
(`ServiceSettings.hmac_secret`: never the public development secret in production or beside a JWKS). A token
whose header names an algorithm no configured source accepts is refused before any key is looked at.
Every query a service makes is scoped by `principal.org_id`; another org's id is reported as not found.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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


# What a JWKS may verify: asymmetric algorithms only (an "oct" key in a JWKS would turn its public document
# into a shared secret).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES256K", "ES384", "ES512", "EdDSA"})
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


# Tokens verified recently, by their exact text. A client sends the same token with every request, and checking
# its signature again (for a JWKS, finding its key too) is most of what authenticating a request costs. An entry
# answers only while the token is unexpired (`exp`, as the full check reads it) and for at most
# VERIFIED_TOKEN_TTL_S after its check, so a key withdrawn from a JWKS stops being honoured within that; only
# successes are kept (a refused token is checked again each time), and at most VERIFIED_TOKEN_CACHE_SIZE.
VERIFIED_TOKEN_TTL_S = 60.0
VERIFIED_TOKEN_CACHE_SIZE = 10_000


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self.secret = settings.hmac_secret
        self.hmac_algorithms = [a for a in settings.jwt_algorithms if a in HMAC_ALGORITHMS] if self.secret else []
        self.audience = settings.jwt_audience or None
        self.max_token_bytes = settings.max_token_bytes
        self._jwks = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None
        self._verified: dict[str, tuple[Principal, float]] = {}  # token -> (principal, usable until, epoch s)

    async def verify(self, token: str) -> Principal:
        if len(token) > self.max_token_bytes:
            raise Unauthorized(f"invalid token: longer than {self.max_token_bytes} bytes")
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, expires_at = await self._verify_fully(token)
        if len(self._verified) >= VERIFIED_TOKEN_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (principal, min(expires_at, now + VERIFIED_TOKEN_TTL_S))
        return principal

    async def _verify_fully(self, token: str) -> tuple[Principal, float]:
        """The token's principal and its expiry (epoch seconds), after checking its signature and claims."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm in ASYMMETRIC_ALGORITHMS and self._jwks is not None:
                # PyJWKClient fetches with urllib; keep that off the event loop.
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                # The key decides its algorithm (its "alg", else its type); the token must use exactly that.
                if signing_key.algorithm_name not in ASYMMETRIC_ALGORITHMS or signing_key.algorithm_name != algorithm:
                    raise Unauthorized(f"invalid token: the key {signing_key.key_id!r} does not verify {algorithm}")
                claims = jwt.decode(token, signing_key.key, algorithms=[signing_key.algorithm_name],
                                    audience=self.audience, options={"require": ["sub", "exp"]})
            elif algorithm in self.hmac_algorithms and self.secret is not None:
                claims = jwt.decode(token, self.secret, algorithms=self.hmac_algorithms, audience=self.audience,
                                    options={"require": ["sub", "exp"]})
            else:
                raise Unauthorized(f"invalid token: the algorithm {str(algorithm)[:20]!r} is not accepted here")
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from exc
        sub, org, role = claims.get("sub"), claims.get("org"), claims.get("role")
        if not isinstance(sub, str) or not sub.strip():
            raise Unauthorized("token has no 'sub' claim")
        if not isinstance(org, str) or not org.strip():
            raise Unauthorized("token has no 'org' claim")
        if role not in ROLES:
            raise Unauthorized("token has no valid 'role' claim")
        # `exp` is required and PyJWT has checked it is a number in the future: the token is refused from then on.
        return Principal(user_id=sub, org_id=org, role=role), float(claims["exp"])


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


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    # A dependency, so it runs before the endpoint looks anything up: a role that may not use the endpoint
    # gets 403 whatever the id, and that answer never says whether the id exists (README, docs/security.md).
    async def _check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"this action needs the role {' or '.join(roles)}")
        return principal
    return _check


AdminPrincipal = Annotated[Principal, Depends(require_roles("admin"))]
ManagerPrincipal = Annotated[Principal, Depends(require_roles("admin", "manager"))]
