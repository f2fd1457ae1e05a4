"""Session handles: the documented derivation, computed here by hand."""

from __future__ import annotations

import hashlib
import hmac
import re

from pyramid_redis_sessions.handles import HANDLE_LENGTH, Handles, session_handle


def by_hand(secret: str, session_id: str) -> str:
    key = hmac.new(
        secret.encode("utf-8"), b"pyramid_redis_sessions.handle", hashlib.sha256
    ).digest()
    return hmac.new(key, session_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def test_a_handle_is_the_documented_hmac() -> None:
    assert session_handle("s3cret", "id1") == by_hand("s3cret", "id1")
    assert Handles("s3cret")("id1") == by_hand("s3cret", "id1")


def test_a_handle_is_32_hex_digits_and_never_contains_the_id() -> None:
    handle = Handles("s3cret")("0123456789abcdef")
    assert re.fullmatch(r"[0-9a-f]{32}", handle) and HANDLE_LENGTH == 32
    assert "0123456789abcdef" not in handle


def test_handles_depend_on_the_secret_and_the_id() -> None:
    handles = Handles("s3cret")
    assert handles("a") != handles("b")
    assert Handles("other")("a") != handles("a")
    assert handles("a") == handles("a")
