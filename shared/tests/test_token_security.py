"""Bearer tokens cannot be forged: each key source accepts only its own algorithms, production never accepts
the public development secret, oversized tokens and empty subjects are refused.

A real JWKS is served over HTTP by a local server the test starts; the app runs with production settings.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter
from pydantic import ValidationError

from salesflow_shared.app import ServiceDefinition, create_service_app
from salesflow_shared.auth import CurrentPrincipal
from salesflow_shared.settings import DEV_JWT_SECRET, ServiceSettings

router = APIRouter(prefix="/v1/whoami")


@router.get("")
async def whoami(principal: CurrentPrincipal) -> dict[str, str]:
    return {"sub": principal.user_id, "org": principal.org_id, "role": principal.role}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
REAL_SECRET = "a-real-secret-of-more-than-thirty-two-characters-0123"


def _jwk(key, kid: str, alg: str | None) -> dict:
    algorithm = jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else jwt.algorithms.ECAlgorithm
    data = json.loads(algorithm.to_jwk(key.public_key()))
    data["kid"] = kid
    if alg:
        data["alg"] = alg
    return data


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    # The RSA key declares RS256; the EC key declares nothing (its type makes it ES256).
    document = json.dumps({"keys": [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", None)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()


def production(**overrides) -> ServiceSettings:
    values = dict(environment="production", database_url="postgresql://db.invalid/x", amqp_url="amqp://mq.invalid/",
                  migrate_on_start=False)
    values.update(overrides)
    return ServiceSettings(**values)


def claims(**overrides) -> dict:
    values = {"sub": "mallory", "org": "victim-org", "role": "admin", "exp": int(time.time()) + 600}
    values.update(overrides)
    return values


async def status_of(settings: ServiceSettings, token: str) -> int:
    # No lifespan: the route reads only the token, so no database or broker is needed.
    app = create_service_app(ServiceDefinition(name="tokens", settings=settings, routers=[router],
                                               migrations_path=Path("unused")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code


def rsa_token(**overrides) -> str:
    return jwt.encode(claims(**overrides), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})


async def test_with_a_jwks_in_production_an_hs256_token_signed_with_the_dev_secret_is_refused(jwks_url):
    settings = production(jwks_url=jwks_url)
    assert await status_of(settings, rsa_token()) == 200  # the JWKS works
    forged = jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256")
    assert await status_of(settings, forged) == 401


async def test_with_a_jwks_in_development_the_dev_secret_is_not_a_second_key_source(jwks_url):
    settings = ServiceSettings(jwks_url=jwks_url)
    assert await status_of(settings, jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256")) == 401
    # ... nor when the development secret is named explicitly
    explicit = ServiceSettings(jwks_url=jwks_url, jwt_secret=DEV_JWT_SECRET)
    assert await status_of(explicit, jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256")) == 401


async def test_a_configured_real_secret_beside_a_jwks_accepts_hs256_with_that_secret_only(jwks_url):
    settings = production(jwks_url=jwks_url, jwt_secret=REAL_SECRET)
    assert await status_of(settings, jwt.encode(claims(), REAL_SECRET, algorithm="HS256")) == 200
    assert await status_of(settings, jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256")) == 401
    assert await status_of(settings, rsa_token()) == 200


async def test_a_jwks_key_verifies_only_the_algorithm_it_declares(jwks_url):
    settings = production(jwks_url=jwks_url)
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    # The classic confusion: HS256 keyed with the (public) RSA key.
    import hmac, hashlib, base64  # noqa: E401,I001 - PyJWT refuses to sign HS256 with a PEM, so sign by hand

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode()) + b"." + \
        b64(json.dumps(claims()).encode())
    confused = signing_input + b"." + b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    assert await status_of(settings, confused.decode()) == 401
    # The EC key (no "alg" in the JWKS) verifies ES256 and nothing else.
    assert await status_of(settings, jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "ec-1"})) == 200
    assert await status_of(settings, jwt.encode(claims(), RSA_KEY, algorithm="RS512",
                                                headers={"kid": "rsa-1"})) == 401
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert await status_of(settings, unsigned) == 401


async def test_development_without_a_jwks_keeps_working_with_the_dev_secret():
    settings = ServiceSettings()
    assert await status_of(settings, jwt.encode(claims(), DEV_JWT_SECRET, algorithm="HS256")) == 200
    forged = jwt.encode(claims(), "another-secret-of-thirty-two-characters-x", algorithm="HS256")
    assert await status_of(settings, forged) == 401


def test_production_refuses_the_development_secret_in_every_configuration(jwks_url):
    for overrides in ({"jwks_url": jwks_url, "jwt_secret": DEV_JWT_SECRET}, {"jwt_secret": DEV_JWT_SECRET},
                      {"jwks_url": jwks_url, "jwt_secret": "changeme"}, {},
                      {"jwks_url": jwks_url, "jwt_secret": "short-but-not-placeholder"}):
        with pytest.raises(ValidationError):
            production(**overrides)
    assert production(jwks_url=jwks_url).hmac_secret is None
    assert production(jwt_secret=REAL_SECRET).hmac_secret == REAL_SECRET


async def test_tokens_over_8_kib_and_tokens_without_a_subject_are_refused():
    settings = production(jwt_secret=REAL_SECRET)
    assert await status_of(settings, jwt.encode(claims(pad="x" * 5000), REAL_SECRET, algorithm="HS256")) == 200
    big = jwt.encode(claims(pad="x" * 60_000), REAL_SECRET, algorithm="HS256")  # validly signed, 80 KB
    assert await status_of(settings, big) == 401
    assert await status_of(settings, jwt.encode(claims(sub=""), REAL_SECRET, algorithm="HS256")) == 401
    assert await status_of(settings, jwt.encode(claims(sub="  "), REAL_SECRET, algorithm="HS256")) == 401
    assert await status_of(settings, jwt.encode(claims(org=" "), REAL_SECRET, algorithm="HS256")) == 401
