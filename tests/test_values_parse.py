"""``values.parse``: a stored hash's MACs checked and its fields sorted, with
no server: what the session, the index and ``psessions show`` read."""

from __future__ import annotations

import pytest

from pyramid_redis_sessions.values import (
    CREATED,
    FLASH,
    TIMEOUT,
    USER,
    USER_DETAILS,
    BadValue,
    FieldCodec,
    parse,
)

SID = "id1"
FLASH_FIELD = FLASH + b"0" * 20 + b"deadbeef:notices"


def stored(codec: FieldCodec, **extra: bytes) -> dict[bytes, bytes]:
    seal = codec.for_session(SID)
    payloads = {
        CREATED: b"1700000000.5",
        TIMEOUT: b"300",
        USER: b"ann",
        USER_DETAILS: b'{"ua":"x"}',
        FLASH_FIELD: b"msg",
        b"\xfflater": b"kept",
        b"cart": b"pickled",
        **{name.encode(): value for name, value in extra.items()},
    }
    return {field: seal.seal(field, payload) for field, payload in payloads.items()}


@pytest.mark.parametrize("strict", [True, False])
def test_parse_sorts_every_field_and_deserializes_nothing(strict: bool) -> None:
    codec = FieldCodec("s")
    record = parse(stored(codec), codec.for_session(SID), strict=strict)
    assert record.keys == {"cart": b"pickled"}
    assert record.flash == {FLASH_FIELD: b"msg"}
    assert record.later == {b"\xfflater": b"kept"}
    assert (record.created, record.timeout) == (1700000000.5, 300)
    assert (record.user, record.user_details) == ("ann", b'{"ua":"x"}')
    assert record.reseal == record.unverified == set()
    assert record.problems == {}


def test_fields_only_a_fallback_verifies_are_to_be_resealed() -> None:
    fields = stored(FieldCodec("old"))
    fields[b"new"] = FieldCodec("new").for_session(SID).seal(b"new", b"v")
    for strict in (True, False):
        seal = FieldCodec("new", ["old"]).for_session(SID)
        record = parse(fields, seal, strict=strict)
        assert record.reseal == set(fields) - {b"new"}
        assert record.keys["new"] == b"v"


def test_strict_refuses_what_the_application_refuses() -> None:
    codec = FieldCodec("s")
    seal = codec.for_session(SID)
    forged = stored(codec)
    forged[b"is_admin"] = FieldCodec("x").for_session(SID).seal(b"is_admin", b"1")
    with pytest.raises(BadValue):
        parse(forged, seal)
    moved = stored(codec)
    moved[b"cart"] = codec.for_session("other").seal(b"cart", b"pickled")
    with pytest.raises(BadValue):
        parse(moved, seal)
    no_created = stored(codec)
    del no_created[CREATED]
    with pytest.raises(BadValue, match="no creation time"):
        parse(no_created, seal)
    not_a_number = stored(codec)
    not_a_number[TIMEOUT] = seal.seal(TIMEOUT, b"soon")
    with pytest.raises(BadValue, match="not a number"):
        parse(not_a_number, seal)


def test_lenient_reports_each_problem_by_field_and_keeps_the_rest() -> None:
    codec = FieldCodec("s")
    seal = codec.for_session(SID)
    fields = stored(codec)
    fields[b"is_admin"] = FieldCodec("x").for_session(SID).seal(b"is_admin", b"1")
    fields[CREATED] = seal.seal(CREATED, b"yesterday")
    bad_flash = FLASH + b"short:q"
    fields[bad_flash] = seal.seal(bad_flash, b"m")
    record = parse(fields, seal, strict=False)
    assert record.problems == {
        b"is_admin": "does not verify",
        CREATED: "is not a number",
        bad_flash: "is not a well-formed flash field",
    }
    assert record.unverified == {b"is_admin"}
    assert "is_admin" not in record.keys and record.keys["cart"] == b"pickled"
    assert record.created is None and record.timeout == 300
    assert record.flash == {FLASH_FIELD: b"msg", bad_flash: b"m"}
