"""The stored value format: header, MAC, payload."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pyramid_redis_sessions.values import FORMAT, BadValue, ValueCodec


def test_format_is_the_documented_one() -> None:
    value = ValueCodec("s3cret").seal("id1", b"payload")
    key = hmac.new(b"s3cret", b"pyramid_redis_sessions.value", hashlib.sha256).digest()
    mac = hmac.new(key, b"PRS1id1\0payload", hashlib.sha256).digest()
    assert value == b"PRS1" + mac + b"payload" and FORMAT == b"PRS1"


def test_open_returns_the_payload_and_whether_secret_sealed_it() -> None:
    codec = ValueCodec("new", ["old"])
    assert codec.open("id", codec.seal("id", b"p")) == (b"p", True)
    assert codec.open("id", ValueCodec("old").seal("id", b"p")) == (b"p", False)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"PRS1",
        b"PRS1" + b"\0" * 32 + b"p",
        b"\x80\x05pickle",
        b"PRS2" + ValueCodec("s").seal("id", b"p")[4:],
    ],
)
def test_anything_not_sealed_by_us_is_refused(value: bytes) -> None:
    with pytest.raises(BadValue):
        ValueCodec("s").open("id", value)


def test_value_is_bound_to_its_session_id() -> None:
    codec = ValueCodec("s")
    with pytest.raises(BadValue):
        codec.open("other", codec.seal("id", b"p"))


def test_tampered_payload_is_refused() -> None:
    codec = ValueCodec("s")
    value = codec.seal("id", b"payload")
    with pytest.raises(BadValue):
        codec.open("id", value[:-1] + b"X")
