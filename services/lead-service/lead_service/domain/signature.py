"""Stripe-style webhook signatures:
`Salesflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
from __future__ import annotations

import hashlib
import hmac

TOLERANCE_S = 300


class SignatureError(ValueError):
    pass


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(header: str, body: bytes, secrets: list[str], now: float, tolerance_s: int = TOLERANCE_S) -> int:
    """Return the signed timestamp, or raise SignatureError saying what is wrong.

    Several `v1=` values are allowed (secret rotation); every candidate is compared in constant time.
    """
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
    signed = f"{timestamp}.".encode() + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("the signature does not match the body")
    return timestamp
