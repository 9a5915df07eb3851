"""Verified tokens are remembered by their exact text, never past their expiry: caching the check keeps every
refusal a full check would make."""
from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from salesflow_shared import auth
from salesflow_shared.auth import Principal, TokenVerifier
from salesflow_shared.errors import Unauthorized
from salesflow_shared.settings import ServiceSettings

SECRET = "a-real-secret-of-more-than-thirty-two-characters-0123"


def verifier() -> TokenVerifier:
    return TokenVerifier(ServiceSettings(jwt_secret=SECRET))


def token(exp: float, secret: str = SECRET, sub: str = "rep-1") -> str:
    return jwt.encode({"sub": sub, "org": "org-a", "role": "rep", "iat": int(time.time()), "exp": exp}, secret,
                      algorithm="HS256")


async def test_a_remembered_token_is_refused_once_it_expires():
    check = verifier()
    expiring = token(int(time.time()) + 2)
    assert await check.verify(expiring) == Principal("rep-1", "org-a", "rep")
    assert await check.verify(expiring) == Principal("rep-1", "org-a", "rep")  # from the cache
    await asyncio.sleep(max(0.0, jwt.decode(expiring, SECRET, algorithms=["HS256"])["exp"] - time.time()) + 0.1)
    with pytest.raises(Unauthorized):
        await check.verify(expiring)


async def test_a_token_differing_from_a_remembered_one_by_a_byte_is_checked_in_full():
    check = verifier()
    good = token(int(time.time()) + 600)
    await check.verify(good)
    tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    with pytest.raises(Unauthorized):
        await check.verify(tampered)
    with pytest.raises(Unauthorized):  # signed with another key: refused, and refusals are never remembered
        await check.verify(token(int(time.time()) + 600, secret="another-secret-of-thirty-two-characters-x"))


async def test_a_remembered_token_is_checked_again_after_the_cache_lifetime(monkeypatch):
    monkeypatch.setattr(auth, "VERIFIED_TOKEN_TTL_S", 0.2)
    check = verifier()
    good = token(int(time.time()) + 600)
    await check.verify(good)
    check.secret = "another-secret-of-thirty-two-characters-x"  # the key that signed it is withdrawn
    assert await check.verify(good) == Principal("rep-1", "org-a", "rep")  # remembered for at most the lifetime
    await asyncio.sleep(0.3)
    with pytest.raises(Unauthorized):
        await check.verify(good)
