"""HMAC signatures: outbound webhooks (the same scheme as docs/architecture.md's form signatures) and unsubscribe
tokens."""
from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "Salesflow-Signature"
TOLERANCE_S = 300


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_webhook(secret: str, body: bytes, header: str, now: int, tolerance_s: int = TOLERANCE_S) -> bool:
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign_webhook(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), given.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsubscribe_token(secret: str, org_id: str, lead_id: str) -> str:
    payload = _b64(f"{org_id}\n{lead_id}".encode())
    mac = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:18])
    return f"{payload}.{mac}"


def read_unsubscribe_token(secret: str, token: str) -> tuple[str, str] | None:
    """(org_id, lead_id) of a token this service issued, or None."""
    payload, _, mac = token.partition(".")
    if not payload or not mac:
        return None
    expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:18])
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        return None
    try:
        org_id, lead_id = _unb64(payload).decode().split("\n", 1)
    except (ValueError, UnicodeDecodeError):
        return None
    return org_id, lead_id
