"""The stored field format: version, tag, payload; what the tag covers."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pyramid_redis_sessions.values import (
    CREATED,
    FORMAT,
    MAX_SECONDS,
    BadValue,
    FieldCodec,
    field_name,
    key_name,
    parse_created,
    parse_timeout,
)


def test_format_is_the_documented_one() -> None:
    value = FieldCodec("s3cret").for_session("id1").seal(b"user", b"payload")
    key = hmac.new(b"s3cret", b"pyramid_redis_sessions.field", hashlib.sha256).digest()
    message = b"PRS2" + b"\0\0\0\3id1" + b"\0\0\0\4user" + b"payload"
    tag = hashlib.blake2b(message, key=key, digest_size=16).digest()
    assert value == b"\x02" + tag + b"payload" and FORMAT == b"PRS2"


def test_open_returns_the_payload_and_whether_secret_sealed_it() -> None:
    codec = FieldCodec("new", ["old"]).for_session("id")
    assert codec.open(b"f", codec.seal(b"f", b"p")) == (b"p", True)
    old = FieldCodec("old").for_session("id").seal(b"f", b"p")
    assert codec.open(b"f", old) == (b"p", False)


def good() -> bytes:
    return FieldCodec("s").for_session("id").seal(b"f", b"p")


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x02",
        b"\x02" + b"\0" * 16 + b"p",
        b"\x80\x05pickle",
        b"\x01" + good()[1:],  # another format version
        good()[:-1] + b"X",  # tampered payload
        good()[:5] + b"X" + good()[6:],  # tampered tag
    ],
)
def test_anything_not_sealed_by_us_is_refused(value: bytes) -> None:
    with pytest.raises(BadValue):
        FieldCodec("s").for_session("id").open(b"f", value)


def test_value_is_bound_to_its_session_and_field() -> None:
    value = good()
    with pytest.raises(BadValue):
        FieldCodec("s").for_session("other").open(b"f", value)
    with pytest.raises(BadValue):
        FieldCodec("s").for_session("id").open(b"g", value)
    with pytest.raises(BadValue):
        FieldCodec("another").for_session("id").open(b"f", value)


def test_lengths_keep_session_id_and_field_apart() -> None:
    """Without length prefixes, id "ab" + field "c" would sign as id "a" +
    field "bc"."""
    value = FieldCodec("s").for_session("ab").seal(b"c", b"p")
    with pytest.raises(BadValue):
        FieldCodec("s").for_session("a").open(b"bc", value)


def test_reserved_fields_cannot_be_session_keys() -> None:
    every_byte_of_utf8 = {
        b for k in ("a", "é", "\U0001f600", "\udcff") for b in field_name(k)
    }
    assert 0xFF not in every_byte_of_utf8 and CREATED[0] == 0xFF
    assert key_name(field_name("\udcff")) == "\udcff"


def test_the_example_in_the_storage_docs() -> None:
    payload = bytes.fromhex("80 05 95 07 00 00 00 00 00 00 00 8c 03 61 6e 6e 94 2e")
    tag = bytes.fromhex("22 74 f5 02 2b cf a9 20 41 02 cf 35 dd 92 e6 b6")
    value = FieldCodec("s3cret").for_session("id1").seal(b"user", payload)
    assert value == b"\x02" + tag + payload


@pytest.mark.parametrize(
    "payload",
    [repr(1733352540.1234567).encode(), b"1.5", b"0.0", repr(1e15).encode()],
)
def test_creation_times_as_the_application_writes_them_parse(payload: bytes) -> None:
    assert parse_created(payload) == float(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"1e20",
        b"inf",
        b"nan",
        b"-5.0",
        b"1733352540",
        b" 1.5",
        b"1.5\n",
        b"1_0.5",
        b"\xd9\xa1.5",
        b"1" * 30 + b".5",
    ],
)
def test_creation_times_in_other_forms_are_bad_values(payload: bytes) -> None:
    with pytest.raises(BadValue):
        parse_created(payload)


@pytest.mark.parametrize("seconds", [0, 1, 1200, MAX_SECONDS])
def test_timeouts_as_the_application_writes_them_parse(seconds: int) -> None:
    assert parse_timeout(str(seconds).encode()) == seconds


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"1.5",
        b"1e20",
        b"inf",
        b"nan",
        b"abc",
        b"-5",
        b"05",
        b"+5",
        b" 5",
        b"9" * 400,
        str(MAX_SECONDS + 1).encode(),
        b"\xd9\xa1",
    ],
)
def test_timeouts_in_other_forms_are_bad_values(payload: bytes) -> None:
    with pytest.raises(BadValue):
        parse_timeout(payload)
