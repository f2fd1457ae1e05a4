"""Legacy cookies and values: what 1.0.1 and pyramid_session_redis 1.8.1
really wrote (``tests/fixtures``) reads back, and nothing else does.

No Redis server: :mod:`pyramid_redis_sessions.legacy` is pure.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import hashlib
import hmac
import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
from webob.cookies import SignedSerializer

from pyramid_redis_sessions.cookies import CookieCodec, CookieSettings
from pyramid_redis_sessions.exceptions import BadLegacyValue, RedisSessionsError
from pyramid_redis_sessions.legacy import (
    FORK_HASHALG,
    FORK_SALT,
    LegacyCookie,
    LegacyCookies,
    LegacyKind,
    LegacySession,
    RefusedGlobal,
    RestrictedLoads,
    decode_value,
)
from tests.stored import CreatesFile, evil_pickle

FIXTURES = Path(__file__).parent / "fixtures"
ONE_X = "pyramid_redis_sessions-1.0.1.json"
FORK = "pyramid_session_redis-1.8.1.json"
KINDS = {ONE_X: LegacyKind.REDIS_SESSIONS_1, FORK: LegacyKind.SESSION_REDIS}
CASES = [
    (name, case)
    for name in (ONE_X, FORK)
    for case in json.loads((FIXTURES / name).read_text())["cases"]
]
IDS = [f"{name.split('-')[0]}-{case['name']}" for name, case in CASES]


def secret_of(case: dict[str, Any]) -> str:
    secret: str = case["settings"]["redis.sessions.secret"]
    return secret


def raw_value(case: dict[str, Any]) -> bytes:
    return base64.b64decode(case["redis_value_b64"])


def expected_data(case: dict[str, Any]) -> dict[str, Any]:
    # The fixture records reprs; rebuild the values (a set's repr order
    # depends on the hash seed, so compare values, not strings).
    return {
        key: eval(text, {"datetime": datetime})  # trusted fixture text
        for key, text in case["session_data_repr"].items()
    }


def one_x_cookie(payload: bytes, secret: str | bytes) -> str:
    """Pyramid 1.x ``signed_serialize`` of an already pickled payload."""
    key = secret if isinstance(secret, bytes) else secret.encode("latin-1")
    signature = hmac.new(key, payload, hashlib.sha1).hexdigest()
    return signature + base64.b64encode(payload).decode("ascii")


class Utf8:
    """The forks' cookie serializer: the key's UTF-8 bytes."""

    def dumps(self, appstruct: str | bytes) -> bytes:
        return appstruct.encode() if isinstance(appstruct, str) else appstruct

    def loads(self, bstruct: bytes) -> str:
        return bstruct.decode()


def fork_cookie(redis_key: str | bytes, secret: str) -> str:
    """pyramid_session_redis 1.8.1's cookie for ``redis_key``."""
    signer = SignedSerializer(secret, FORK_SALT, FORK_HASHALG, Utf8())
    value: bytes = signer.dumps(redis_key)
    return value.decode("ascii")


class TestRecordedCookies:
    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_recorded_cookie_yields_the_recorded_key(
        self, name: str, case: dict[str, Any]
    ) -> None:
        cookie = LegacyCookies(secret_of(case)).read(case["cookie_value"])
        assert cookie == LegacyCookie(KINDS[name], case["redis_key"], False)

    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_recorded_cookie_with_another_secret_is_refused(
        self, name: str, case: dict[str, Any]
    ) -> None:
        reader = LegacyCookies(secret_of(case) + "x", ["also-wrong"])
        assert reader.read(case["cookie_value"]) is None

    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_recorded_cookie_verified_by_a_fallback_says_so(
        self, name: str, case: dict[str, Any]
    ) -> None:
        reader = LegacyCookies("the new secret", ["older", secret_of(case)])
        cookie = reader.read(case["cookie_value"])
        assert cookie == LegacyCookie(KINDS[name], case["redis_key"], True)

    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_every_truncation_of_a_recorded_cookie_is_refused(
        self, name: str, case: dict[str, Any]
    ) -> None:
        reader = LegacyCookies(secret_of(case))
        value = case["cookie_value"]
        for end in range(len(value)):
            assert reader.read(value[:end]) is None, end

    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_a_recorded_cookie_with_any_one_character_changed_is_refused(
        self, name: str, case: dict[str, Any]
    ) -> None:
        reader = LegacyCookies(secret_of(case))
        value = case["cookie_value"]
        for i, char in enumerate(value):
            for other in {"0", "A", "f", "_", "+"} - {char}:
                tampered = value[:i] + other + value[i + 1 :]
                assert reader.read(tampered) is None, (i, other)

    def test_the_recorded_kinds_do_not_verify_as_each_other(self) -> None:
        secret = "one secret for both"
        one_x = one_x_cookie(pickle.dumps("a-key"), secret)
        fork = fork_cookie("a-key", secret)
        reader = LegacyCookies(secret)
        assert reader.read(one_x) == LegacyCookie(
            LegacyKind.REDIS_SESSIONS_1, "a-key", False
        )
        assert reader.read(fork) == LegacyCookie(
            LegacyKind.SESSION_REDIS, "a-key", False
        )

    def test_repr_of_a_cookie_hides_the_key(self) -> None:
        cookie = LegacyCookie(LegacyKind.SESSION_REDIS, "the-bearer-id", False)
        assert "the-bearer-id" not in repr(cookie)


class KeyStr(str):
    """A str subclass: pickled by reference to this module."""


class TestOneXCookies:
    reader = LegacyCookies("s3cret", ["old"])

    def test_python_2_pickles_of_the_key_read_as_str(self) -> None:
        # What 1.0.1 wrote on Python 2: a byte string, protocol 2 or 0.
        for payload in (b"\x80\x02U\x06sess:1q\x00.", b"S'sess:1'\np0\n."):
            cookie = self.reader.read(one_x_cookie(payload, "s3cret"))
            assert cookie is not None and cookie.redis_key == "sess:1"

    def test_secret_not_in_latin_1_signs_with_its_utf_8_bytes(self) -> None:
        secret = "sécret ☃"
        value = one_x_cookie(pickle.dumps("k"), secret.encode("utf-8"))
        cookie = LegacyCookies(secret).read(value)
        assert cookie is not None and cookie.redis_key == "k"

    def test_latin_1_secret_signed_as_pyramid_1_did(self) -> None:
        secret = "sécret"
        value = one_x_cookie(pickle.dumps("k"), secret.encode("latin-1"))
        assert LegacyCookies(secret).read(value) is not None
        # Python 2 apps passed the ini file's UTF-8 bytes instead.
        value = one_x_cookie(pickle.dumps("k"), secret.encode("utf-8"))
        assert LegacyCookies(secret).read(value) is not None

    @pytest.mark.parametrize(
        "obj",
        [42, b"key", ["key"], ("key",), {"key": 1}, None, True, 1.5, "", {"k"}],
        ids=repr,
    )
    def test_validly_signed_pickle_of_anything_but_a_str_is_refused(
        self, obj: Any
    ) -> None:
        value = one_x_cookie(pickle.dumps(obj), "s3cret")
        assert self.reader.read(value) is None

    def test_validly_signed_pickle_of_a_str_subclass_is_refused(self) -> None:
        value = one_x_cookie(pickle.dumps(KeyStr("k")), "s3cret")
        assert self.reader.read(value) is None

    @pytest.mark.parametrize(
        "payload",
        [
            b"",
            b"\x80\x05.",
            b"garbage",
            b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff\x7f",
            b"(" * 2000 + b".",
            b"\x80\x04\x82\x01.",  # EXT1: a copyreg extension, i.e. a global
            b"\x80\x04P0\n.",  # a persistent id
            b"\x80\x05\x97.",  # NEXT_BUFFER without buffers
        ],
        ids=repr,
    )
    def test_validly_signed_malformed_pickles_are_refused(self, payload: bytes) -> None:
        assert self.reader.read(one_x_cookie(payload, "s3cret")) is None

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "garbage",
            "0" * 40,
            "0" * 40 + "gAU=",
            "a" * 40 + "!!!!",
            "é" * 60,
            "\udcff" * 60,
            "0" * 5000,
        ],
        ids=lambda v: repr(v)[:20],
    )
    def test_garbage_is_refused(self, value: str) -> None:
        assert self.reader.read(value) is None

    def test_non_ascii_anywhere_is_refused(self) -> None:
        value = one_x_cookie(pickle.dumps("k"), "s3cret")
        assert self.reader.read(value) is not None
        assert self.reader.read(value + "é") is None

    def test_validly_signed_cookie_over_4_kb_is_refused(self) -> None:
        value = one_x_cookie(pickle.dumps("k" * 4000), "s3cret")
        assert len(value) > 4096
        assert self.reader.read(value) is None

    def test_upper_case_signature_is_refused(self) -> None:
        value = one_x_cookie(pickle.dumps("k"), "s3cret")
        assert self.reader.read(value[:40].upper() + value[40:]) is None

    def test_values_that_are_not_str_are_refused(self) -> None:
        value = one_x_cookie(pickle.dumps("k"), "s3cret")
        for not_str in (value.encode(), None, 42):
            assert self.reader.read(not_str) is None  # type: ignore[arg-type]


class TestMaliciousOneXPickle:
    """A cookie signed with the secret (someone saw it) whose pickle names a
    global: the restricted unpickler refuses it and nothing runs."""

    def test_control_the_payload_creates_the_file_with_plain_pickle(
        self, tmp_path: Path
    ) -> None:
        target = tmp_path / "pwned"
        payload = evil_pickle(target)
        pickle.loads(payload).close()  # the unsafe load this module avoids
        assert target.exists()

    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    def test_validly_signed_cookie_naming_a_global_runs_nothing(
        self, tmp_path: Path, protocol: int
    ) -> None:
        target = tmp_path / "pwned"
        payload = evil_pickle(target, protocol)
        assert b"open" in payload
        value = one_x_cookie(payload, "s3cret")
        assert LegacyCookies("s3cret").read(value) is None
        assert not target.exists()

    def test_global_that_would_return_a_str_is_refused_too(self) -> None:
        # os.getcwd() returns a str: only refusing every global stops it.
        payload = b"\x80\x04\x8c\x02os\x8c\x06getcwd\x93)R."
        assert pickle.loads(payload) == os.getcwd()
        assert LegacyCookies("s3cret").read(one_x_cookie(payload, "s3cret")) is None


class TestForkCookies:
    reader = LegacyCookies("s3cret", ["old"])

    def test_cookie_is_webobs_signed_serializer_with_the_forks_salt(self) -> None:
        cookie = self.reader.read(fork_cookie("myapp:abc", "s3cret"))
        assert cookie == LegacyCookie(LegacyKind.SESSION_REDIS, "myapp:abc", False)

    def test_fallback_secret_verifies_and_says_so(self) -> None:
        cookie = self.reader.read(fork_cookie("abc", "old"))
        assert cookie == LegacyCookie(LegacyKind.SESSION_REDIS, "abc", True)
        assert LegacyCookies("s3cret").read(fork_cookie("abc", "old")) is None

    def test_our_own_cookie_format_is_not_taken_for_the_forks(self) -> None:
        ours = CookieCodec("s3cret", (), CookieSettings()).sign("abc")
        assert self.reader.read(ours) is None

    def test_signed_empty_or_non_utf_8_keys_are_refused(self) -> None:
        for payload in (b"", b"\xff\xfe"):
            assert self.reader.read(fork_cookie(payload, "s3cret")) is None

    def test_standard_base64_spelling_of_a_valid_cookie_is_refused(self) -> None:
        # WebOb would decode "+" and "/" like "-" and "_"; the fork never
        # wrote them, so such a cookie is not one of its cookies.
        value = next(
            v for i in range(100) if "-" in (v := fork_cookie(f"k{i}", "s3cret"))
        )
        assert self.reader.read(value) is not None
        assert self.reader.read(value.replace("-", "+")) is None


def one_x_value(**envelope: Any) -> bytes:
    fields = {"managed_dict": {"a": 1}, "created": 1.5, "timeout": 1200}
    return pickle.dumps({**fields, **envelope})


def fork_value(**payload: Any) -> bytes:
    fields = {"m": {"a": 1}, "c": 2, "v": 1, "t": 300, "x": 1}
    return pickle.dumps({k: v for k, v in {**fields, **payload}.items() if v != ...})


class TestDecodeValue:
    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_recorded_value_decodes_to_the_recorded_session(
        self, name: str, case: dict[str, Any]
    ) -> None:
        session = decode_value(KINDS[name], raw_value(case))
        assert session.data == expected_data(case)
        assert session.flash == case["flash"]
        assert session.csrf_token == case["csrf_token"]
        assert session.timeout == case["redis_ttl"]
        assert session.dropped_keys == ()
        assert 1.7e9 < session.created < 1.9e9

    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_recorded_value_of_the_other_package_is_a_bad_value(
        self, name: str, case: dict[str, Any]
    ) -> None:
        other = next(k for k in LegacyKind if k is not KINDS[name])
        with pytest.raises(BadLegacyValue):
            decode_value(other, raw_value(case))

    @pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
    def test_every_truncation_of_a_recorded_value_is_a_bad_value(
        self, name: str, case: dict[str, Any]
    ) -> None:
        raw = raw_value(case)
        for end in range(len(raw)):
            with pytest.raises(BadLegacyValue):
                decode_value(KINDS[name], raw[:end])

    def test_fork_value_keeps_its_timeout_and_ignores_its_expiry(self) -> None:
        session = decode_value(LegacyKind.SESSION_REDIS, fork_value(x=0))
        assert (session.timeout, session.created) == (300, 2.0)
        session = decode_value(LegacyKind.SESSION_REDIS, fork_value(t=..., x=...))
        assert session.timeout is None

    def test_zero_or_none_timeout_means_no_expiry(self) -> None:
        for timeout in (0, None):
            raw = one_x_value(timeout=timeout)
            assert decode_value(LegacyKind.REDIS_SESSIONS_1, raw).timeout is None

    def test_keys_that_are_not_str_are_dropped_and_named(self) -> None:
        data = {"ok": 1, 7: "seven", b"raw": 2, ("t",): 3}
        session = decode_value(
            LegacyKind.REDIS_SESSIONS_1, one_x_value(managed_dict=data)
        )
        assert session.data == {"ok": 1}
        assert session.dropped_keys == ("7", "b'raw'", "('t',)")

    def test_flash_queues_and_csrf_token_are_taken_out_of_the_data(self) -> None:
        data = {"_f_": ["a", "b"], "_f_errors": [{"x": 1}], "_csrft_": "t", "k": 1}
        session = decode_value(
            LegacyKind.REDIS_SESSIONS_1, one_x_value(managed_dict=data)
        )
        assert session.data == {"k": 1}
        assert session.flash == {"": ["a", "b"], "errors": [{"x": 1}]}
        assert session.csrf_token == "t"

    def test_a_custom_deserializer_is_used(self) -> None:
        raw = json.dumps({"managed_dict": {"k": 1}, "created": 1, "timeout": 5})
        session = decode_value(
            LegacyKind.REDIS_SESSIONS_1, raw.encode(), loads=json.loads
        )
        assert (session.data, session.created, session.timeout) == ({"k": 1}, 1.0, 5)

    def test_repr_shows_no_data(self) -> None:
        session = LegacySession({"card": "4111"}, 1.0, 5, {"": ["hi"]}, "tok")
        for text in ("4111", "card", "hi", "tok"):
            assert text not in repr(session)

    @pytest.mark.parametrize(
        ("kind", "raw"),
        [
            (LegacyKind.REDIS_SESSIONS_1, b""),
            (LegacyKind.REDIS_SESSIONS_1, b"garbage"),
            (LegacyKind.REDIS_SESSIONS_1, b"\x80\x05\x95\xff\xff\xff\xff\xff\xff\xff"),
            (LegacyKind.REDIS_SESSIONS_1, pickle.dumps(["not", "a", "dict"])),
            (LegacyKind.REDIS_SESSIONS_1, pickle.dumps({"managed_dict": {}})),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(extra=1)),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(managed_dict=[("a", 1)])),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(created="yesterday")),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(created=True)),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(created=float("nan"))),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(created=-1)),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(timeout=-5)),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(timeout="1200")),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(timeout=12.5)),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(timeout=False)),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(managed_dict={"_f_": "x"})),
            (LegacyKind.REDIS_SESSIONS_1, one_x_value(managed_dict={"_csrft_": 1})),
            (LegacyKind.SESSION_REDIS, fork_value(v=...)),
            (LegacyKind.SESSION_REDIS, fork_value(v=2)),
            (LegacyKind.SESSION_REDIS, fork_value(v=True)),
            (LegacyKind.SESSION_REDIS, fork_value(m=...)),
            (LegacyKind.SESSION_REDIS, fork_value(c=...)),
            (LegacyKind.SESSION_REDIS, fork_value(c=None)),
            (LegacyKind.SESSION_REDIS, fork_value(t="300")),
            (LegacyKind.SESSION_REDIS, fork_value(managed_dict={})),
            (LegacyKind.SESSION_REDIS, fork_value(m=None)),
        ],
        ids=lambda v: repr(v)[:60],
    )
    def test_malformed_values_raise_bad_legacy_value(
        self, kind: LegacyKind, raw: bytes
    ) -> None:
        with pytest.raises(BadLegacyValue) as info:
            decode_value(kind, raw)
        assert str(info.value)

    def test_a_value_that_is_not_bytes_is_a_bad_value(self) -> None:
        for raw in (None, "text", bytearray(b"x")):
            with pytest.raises(BadLegacyValue, match="not bytes"):
                decode_value(LegacyKind.SESSION_REDIS, raw)  # type: ignore[arg-type]

    def test_whatever_the_deserializer_raises_becomes_a_bad_value(self) -> None:
        def loads(raw: bytes) -> Any:
            raise KeyError("boom")

        with pytest.raises(BadLegacyValue, match="KeyError"):
            decode_value(LegacyKind.SESSION_REDIS, b"x", loads=loads)

    def test_bad_legacy_value_is_a_value_error_of_this_package(self) -> None:
        assert issubclass(BadLegacyValue, ValueError)
        assert issubclass(BadLegacyValue, RedisSessionsError)

    def test_reasons_name_no_data(self) -> None:
        secret = "4111-1111-1111-1111"
        bad = [
            one_x_value(managed_dict={"_f_": secret}),
            one_x_value(managed_dict={"_csrft_": [secret]}),
            one_x_value(created=secret),
            one_x_value(timeout=secret),
            one_x_value(managed_dict=secret),
        ]
        for raw in bad:
            with pytest.raises(BadLegacyValue) as info:
                decode_value(LegacyKind.REDIS_SESSIONS_1, raw)
            assert secret not in str(info.value)


class Basket:
    """An application's class, allowed by name in the tests below."""

    def __init__(self, items: list[str]) -> None:
        self.items = items

    def __eq__(self, other: object) -> bool:
        return type(other) is Basket and other.items == self.items


#: Where Basket was before it moved, as old pickles name it.
MovedBasket = Basket

#: Values of every type legacy pickles may hold without legacy_pickle_allow.
SAFE_VALUES = [
    {"a": 1},
    [1, "x"],
    (1,),
    {1, 2},
    frozenset({3}),
    "text",
    b"bytes",
    bytearray(b"array"),
    -(10**30),
    1.5,
    2j,
    True,
    None,
    datetime.date(2024, 5, 17),
    datetime.time(12, 30, tzinfo=datetime.timezone.utc),
    datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.timezone.utc),
    datetime.timedelta(days=1, seconds=5),
    datetime.timezone(datetime.timedelta(hours=2), "CEST"),
    decimal.Decimal("1.50"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    collections.OrderedDict(a=1, b=2),
    collections.defaultdict(list, a=[1]),
    collections.deque([1, 2], maxlen=5),
    collections.Counter("abracadabra"),
]


class TestRestrictedLoads:
    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    @pytest.mark.parametrize("value", SAFE_VALUES, ids=lambda v: type(v).__name__)
    def test_the_types_sessions_keep_load_with_every_protocol(
        self, value: Any, protocol: int
    ) -> None:
        loaded = RestrictedLoads()(pickle.dumps(value, protocol))
        assert loaded == value and type(loaded) is type(value)
        if isinstance(value, collections.deque):
            assert loaded.maxlen == value.maxlen

    @pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
    def test_a_pickle_that_creates_a_file_is_refused_and_runs_nothing(
        self, tmp_path: Path, protocol: int
    ) -> None:
        target = tmp_path / "pwned"
        envelope = {
            "managed_dict": {"a": 1, "x": CreatesFile(target)},
            "created": 1.5,
            "timeout": 5,
        }
        raw = pickle.dumps(envelope, protocol)
        with pytest.raises(BadLegacyValue) as info:
            decode_value(LegacyKind.REDIS_SESSIONS_1, raw)
        assert "'io.open'" in str(info.value)
        assert not target.exists()
        with pytest.raises(RefusedGlobal) as refused:
            RestrictedLoads()(raw)
        assert refused.value.name == "io.open"
        assert not target.exists()

    @pytest.mark.parametrize(
        ("raw", "name"),
        [
            (b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R.", "os.system"),
            (b"cos\nsystem\n(S'true'\ntR.", "os.system"),
            (b"c__builtin__\neval\n(S'1'\ntR.", "__builtin__.eval"),
            (b"\x80\x04\x8c\x08builtins\x8c\x04type\x93N\x85R.", "builtins.type"),
            (b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93.", "builtins.getattr"),
            (b"\x80\x04\x8c\x07copyreg\x8c\x0a_newobj_ex\x93.", "copyreg._newobj_ex"),
            (b"\x80\x04\x8c\x08builtins\x8c\x05open\n\x93.", "builtins.open\n"),
        ],
        ids=lambda v: repr(v)[:30],
    )
    def test_any_other_global_is_refused_by_name(self, raw: bytes, name: str) -> None:
        with pytest.raises(RefusedGlobal) as info:
            RestrictedLoads()(raw)
        assert info.value.name == name
        with pytest.raises(BadLegacyValue) as bad:
            decode_value(LegacyKind.SESSION_REDIS, raw)
        assert repr(name) in str(bad.value) and "\n" not in str(bad.value)

    @pytest.mark.parametrize(
        "raw",
        [
            # bytearray(10**12): a terabyte from a few bytes of pickle.
            b"\x80\x04\x8c\x08builtins\x8c\tbytearray\x93\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R.",
            b"\x80\x04\x8c\x08builtins\x8c\x05bytes\x93\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85R.",
            # NEWOBJ of bytes: bytes.__new__(bytes, 10**12).
            b"\x80\x04\x8c\x08builtins\x8c\x05bytes\x93\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85\x81.",
            # copyreg._reconstructor(list, bytearray, 10**12) calls bytearray.__init__.
            b"\x80\x02ccopy_reg\n_reconstructor\nc__builtin__\nlist\nc__builtin__\n"
            b"bytearray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x87R.",
            # Another codec than the Latin-1 that pickles of bytes use.
            b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.",
            b"\x80\x04P0\n.",  # a persistent id
        ],
        ids=[
            "bytearray-size",
            "bytes-size",
            "bytes-newobj",
            "reconstructor",
            "codec",
            "pid",
        ],
    )
    def test_the_allowed_globals_cannot_be_turned_against_the_process(
        self, raw: bytes
    ) -> None:
        with pytest.raises(pickle.UnpicklingError):
            RestrictedLoads()(raw)

    def test_a_class_allowed_by_the_application_loads(self) -> None:
        raw = pickle.dumps({"m": {"b": Basket(["x"])}, "c": 1, "v": 1})
        with pytest.raises(BadLegacyValue, match=r"'tests\.test_legacy\.Basket'"):
            decode_value(LegacyKind.SESSION_REDIS, raw)
        session = decode_value(LegacyKind.SESSION_REDIS, raw, RestrictedLoads([Basket]))
        assert session.data == {"b": Basket(["x"])}

    def test_a_class_allowed_by_its_old_name_loads_from_old_pickles(self) -> None:
        """A class that moved since (and is still importable under its old
        name) is allowed under the name the setting gives, as old pickles
        spell it."""
        raw = pickle.dumps(Basket(["x"]), 0).replace(b"\nBasket\n", b"\nMovedBasket\n")
        assert b"MovedBasket" in raw
        with pytest.raises(RefusedGlobal, match="MovedBasket"):
            RestrictedLoads([Basket])(raw)
        for name in ("tests.test_legacy.MovedBasket", "tests.test_legacy:MovedBasket"):
            assert RestrictedLoads([(name, Basket)])(raw) == Basket(["x"])

    def test_the_fixtures_name_only_safe_globals(self) -> None:
        """What the recorded values need is what is allowed by default."""
        for _, case in CASES:
            raw = raw_value(case)
            assert RestrictedLoads()(raw) == pickle.loads(raw)
