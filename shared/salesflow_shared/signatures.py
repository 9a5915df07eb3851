"""Webhook signatures, one scheme for what Salesflow receives (web-form posts) and what it sends (outbound
webhooks): `Salesflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.

Rotation works on both sides: a sender signing with several secrets writes one `v1=` per secret (the old and
the new one while receivers switch over), and a receiver accepts a header when any of its secrets matches any
`v1=`. Every comparison is constant-time; the timestamp bounds replays to `TOLERANCE_S` either way.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_HEADER = "Salesflow-Signature"
TOLERANCE_S = 300


class SignatureError(ValueError):
    """The header is missing a part, too old or too new, or matches none of the secrets; the text says which."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secrets: str | Sequence[str], body: bytes, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp`, with one `v1=` per secret (in the order given)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    return ",".join([f"t={timestamp}", *(f"v1={_mac(key, timestamp, body)}" for key in keys)])


def verify(header: str, body: bytes, secrets: Sequence[str], now: float, tolerance_s: int = TOLERANCE_S) -> int:
    """The signed timestamp, or SignatureError saying what is wrong."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("the t= timestamp is not an integer") from None
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError("expected 't=<unix seconds>,v1=<hex hmac>'")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"the timestamp is more than {tolerance_s} s away from the server's clock")
    matched = False
    for secret in secrets:  # no early exit: the time taken does not say which secret or candidate matched
        expected = _mac(secret, timestamp, body).encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("the signature does not match the body")
    return timestamp
