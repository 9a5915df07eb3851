"""Unsubscribe tokens: the lead and org a link in an email stands for, HMAC-signed so it cannot be forged.

Outbound webhooks are signed with the shared scheme (salesflow_shared.signatures), like web-form posts."""
from __future__ import annotations

import base64
import hashlib
import hmac


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
