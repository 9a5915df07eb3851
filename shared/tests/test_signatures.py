"""The one webhook signature scheme: what web forms send to lead-service and what notification-service sends."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from salesflow_shared.signatures import SignatureError, sign, verify

BODY = b'{"email":"a@b.io"}'
AT = 1_700_000_000


def test_header_is_the_documented_hmac_of_timestamp_dot_body():
    expected = hmac.new(b"s3cret", b'1700000000.{"email":"a@b.io"}', hashlib.sha256).hexdigest()
    assert sign("s3cret", BODY, AT) == f"t=1700000000,v1={expected}"
    assert verify(sign("s3cret", BODY, AT), BODY, ["s3cret"], AT + 0.5) == AT


def test_rotation_on_both_sides():
    # A sender between two secrets signs with both; a receiver that knows either one accepts.
    header = sign(["new-secret", "old-secret"], BODY, AT)
    assert header.count("v1=") == 2
    assert verify(header, BODY, ["old-secret"], AT) == AT
    assert verify(header, BODY, ["new-secret"], AT) == AT
    # A receiver with two secrets accepts a sender that has only one of them; a stray v1= does not hurt.
    assert verify(sign("old-secret", BODY, AT) + ",v1=" + "0" * 64, BODY, ["new-secret", "old-secret"], AT) == AT
    with pytest.raises(SignatureError, match="does not match"):
        verify(header, BODY, ["another-secret"], AT)
    with pytest.raises(ValueError):
        sign([], BODY, AT)


@pytest.mark.parametrize("header, body, now, why", [
    (sign("s3cret", BODY, AT), BODY + b" ", AT, "does not match"),
    (sign("s3cret", BODY, AT), BODY, AT + 301, "300 s"),
    (sign("s3cret", BODY, AT), BODY, AT - 301, "300 s"),
    ("v1=abc", BODY, AT, "expected"),
    ("t=1700000000", BODY, AT, "expected"),
    ("t=abc,v1=abc", BODY, AT, "not an integer"),
    ("garbage", BODY, AT, "expected"),
    ("t=1700000000,v1=ß", BODY, AT, "does not match"),  # not hex, not even ASCII: refused, never a crash
])
def test_refusals_say_what_is_wrong(header, body, now, why):
    with pytest.raises(SignatureError, match=why):
        verify(header, body, ["s3cret"], now)
