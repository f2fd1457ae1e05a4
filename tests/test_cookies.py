"""The cookie holds only the signed session id."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from pyramid.request import Request
from pyramid.response import Response
from webob.cookies import SignedSerializer

from pyramid_redis_sessions.cookies import (
    CookieCodec,
    CookieSettings,
    RateLimitedLog,
    cookie_values,
)
from pyramid_redis_sessions.legacy import LegacyCookies, LegacyKind


def codec(secret: str = "s3cret", fallbacks: tuple[str, ...] = ()) -> CookieCodec:
    return CookieCodec(secret, fallbacks, CookieSettings())


def test_cookie_is_webobs_signed_serializer_of_the_id() -> None:
    value = codec().sign("abc")
    signer = SignedSerializer("s3cret", "pyramid_redis_sessions.cookie.")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    assert raw.endswith(b"abc") and signer.digest_size == len(raw) - 3
    assert codec().unsign(value) == ("abc", True)


def _webob_result(signer: SignedSerializer, value: str) -> str | None:
    try:
        result: str = signer.loads(value)
    except ValueError:
        return None
    return result


@pytest.mark.parametrize(
    "session_id", ["abc", "", "id-" + "x" * 40, "caf\u00e9", "a" * 300]
)
def test_signing_is_byte_for_byte_webobs(session_id: str) -> None:
    # The cookie's signer keys its HMAC once; WebOb's own, given the same
    # secret, salt and payload, writes the same value and reads it back.
    ours = codec().sign(session_id)
    webob = SignedSerializer(
        "s3cret", "pyramid_redis_sessions.cookie.", serializer=_Utf8()
    )
    assert ours == webob.dumps(session_id).decode("ascii")
    assert webob.loads(ours) == session_id
    assert codec().unsign(ours) == (session_id, True)


def _other(char: str) -> str:
    return "A" if char != "A" else "B"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-3] + _other(v[-3]) + v[-2:],  # payload changed
        lambda v: _other(v[0]) + v[1:],  # signature changed
        lambda v: v[:20],  # truncated inside the signature
        lambda v: v + "!",  # not base64
        lambda v: "",
        lambda v: "===",
    ],
)
def test_reading_refuses_what_webob_refuses(mangle: Any) -> None:
    value = mangle(codec().sign("some-session-id"))
    webob = SignedSerializer(
        "s3cret", "pyramid_redis_sessions.cookie.", serializer=_Utf8()
    )
    assert _webob_result(webob, value) is None
    assert codec().unsign(value) == (None, False)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-1] + _other(v[-1]),  # only the last digit's spare bits
        lambda v: v + "=",  # padding, which base64 decoding ignores
        lambda v: v.replace("-", "+"),  # the other alphabet, decoded the same
    ],
)
def test_reading_accepts_what_webob_accepts(mangle: Any) -> None:
    # What decodes to the same signed bytes is the same cookie, for WebOb
    # and for the codec alike.
    value = mangle(codec().sign("some-session-id"))
    assert value != codec().sign("some-session-id")
    webob = SignedSerializer(
        "s3cret", "pyramid_redis_sessions.cookie.", serializer=_Utf8()
    )
    assert _webob_result(webob, value) == "some-session-id"
    assert codec().unsign(value) == ("some-session-id", True)


class _Utf8:
    def dumps(self, appstruct: str) -> bytes:
        return appstruct.encode("utf-8")

    def loads(self, bstruct: bytes) -> str:
        return bstruct.decode("utf-8")


def test_fallback_secrets_verify_but_are_not_current() -> None:
    old = codec("old").sign("abc")
    assert codec("new", ("old",)).unsign(old) == ("abc", False)
    assert codec("new").unsign(old) == (None, False)


def test_read_reports_absent_bad_and_good_cookies() -> None:
    c = codec()
    absent = c.read(Request.blank("/"))
    assert (absent.session_id, absent.present) == (None, False)
    bad = c.read(Request.blank("/", headers={"Cookie": "session=nope"}))
    assert (bad.session_id, bad.present) == (None, False)  # not ours to clear
    good = c.read(Request.blank("/", headers={"Cookie": f"session={c.sign('id')}"}))
    assert (good.session_id, good.present, good.current) == ("id", True, True)


@pytest.mark.parametrize(
    "header",
    [
        "session={a}",  # our cookie alone: read without WebOb's parser
        "session={a}; other=1",  # everything else goes through WebOb
        "other=1; session={a}",
        'session="{a}"',
        "session = {a}",
        "session={a}=",
        "session=",
        "xsession={a}",
        "sessionx={a}",
        "Session={a}",
        "session={a};",
        " session={a}",
        "session={a},other=1",
        "session={a}, other=1",
        "other=1 session={a}",
        "other=1;session={a}",
        "other=1;\tsession={a}",
        "$Version=1; session={a}; $Path=/",
        'other="x; session={b}"; session={a}',
        'other="x; session={b}"',
        "other=x=y; session={a}",
        "other={b}; session={a}; third={b}",
        "session={a}x",
        "session={a}=; x=1",
        "s={b}; session={a}",
        "session=={a}",
        "session={a}\\",
        '"session"={a}',
        "session:x={a}",
        ";;; ,, session={a} ;;",
    ],
)
def test_read_finds_the_cookie_webob_finds(header: str) -> None:
    """With one cookie of the session's name, the value read is WebOb's."""
    c = codec()
    header = header.format(a=c.sign("A"), b=c.sign("B"))
    request = Request.blank("/", headers={"Cookie": header})
    value = request.cookies.get("session")
    assert cookie_values(header, "session") == ([] if value is None else [value])
    state = c.read(request)
    assert state.session_id == (None if value is None else c.unsign(value)[0])
    assert state.present == (state.session_id is not None)


@pytest.mark.parametrize("path", ["/", "/app"])
@pytest.mark.parametrize("domain", [None, "example.com"])
@pytest.mark.parametrize("secure", [False, True])
@pytest.mark.parametrize("httponly", [False, True])
@pytest.mark.parametrize("samesite", [None, "Lax", "Strict", "None"])
def test_headers_are_webobs_for_every_setting(
    path: str, domain: str | None, secure: bool, httponly: bool, samesite: str | None
) -> None:
    # The codec builds WebOb's Set-Cookie header once per setting and
    # fills in the value; what it sends is what set_cookie and
    # delete_cookie would have sent.
    settings = CookieSettings(
        path=path, domain=domain, secure=secure, httponly=httponly, samesite=samesite
    )
    if samesite == "None" and not secure:
        # WebOb refuses to build it (and the factory refuses the settings).
        with pytest.raises(ValueError, match="samesite"):
            CookieCodec("s3cret", (), settings)
        return
    c = CookieCodec("s3cret", (), settings)
    ours, webob = Response(), Response()
    c.set(ours, "the-id")
    webob.set_cookie(
        "session",
        c.sign("the-id"),
        path=path,
        domain=domain,
        secure=secure,
        httponly=httponly,
        samesite=samesite,
    )
    c.delete(ours)
    webob.delete_cookie("session", path=path, domain=domain)
    assert ours.headers.getall("Set-Cookie") == webob.headers.getall("Set-Cookie")
    assert len(ours.headers.getall("Set-Cookie")) == 2


def test_a_max_age_cookie_is_webobs_with_its_moving_date() -> None:
    c = CookieCodec("s3cret", (), CookieSettings(max_age=3600))
    response = Response()
    c.set(response, "the-id")
    header = response.headers["Set-Cookie"]
    assert header.startswith(f"session={c.sign('the-id')}; Max-Age=3600; ")
    assert "expires=" in header


class TestSeveralCookies:
    """A sibling subdomain can set a cookie of the session's name for the
    parent domain; the browser then sends both, in an order the attacker
    may choose (a longer path, or an older cookie, comes first)."""

    c = CookieCodec("s3cret", (), CookieSettings(), LegacyCookies("s3cret"))

    def read(self, header: str) -> Any:
        return self.c.read(Request.blank("/", headers={"Cookie": header}))

    def test_every_value_of_the_name_is_found_in_order(self) -> None:
        header = 'session=1; other=2; session="3"; xsession=4, session=5'
        assert cookie_values(header, "session") == ["1", "3", "5"]
        assert Request.blank("/", headers={"Cookie": header}).cookies["session"] == "5"

    @pytest.mark.parametrize(
        "planted", ["garbage", "", "x" * 5000, "é", "{other}"], ids=repr
    )
    @pytest.mark.parametrize(
        "first", [True, False], ids=["planted-first", "planted-last"]
    )
    def test_an_invalid_cookie_beside_a_valid_one_changes_nothing(
        self, planted: str, first: bool
    ) -> None:
        mine = self.c.sign("mine")
        planted = planted.format(other=codec("another secret").sign("theirs"))
        pair = [f"session={planted}", f"session={mine}"]
        state = self.read("; ".join(pair if first else pair[::-1]))
        assert (state.session_id, state.present, state.current) == ("mine", True, True)

    def test_the_first_that_verifies_wins(self) -> None:
        a, b = self.c.sign("A"), self.c.sign("B")
        assert self.read(f"session={a}; session={b}").session_id == "A"
        assert self.read(f"session=bad; session={b}; session={a}").session_id == "B"

    def test_a_legacy_cookie_takes_part_in_either_order(self) -> None:
        fork = (
            SignedSerializer(
                "s3cret", "pyramid_session_redis.", "sha512", serializer=_Utf8()
            )
            .dumps("old-key")
            .decode()
        )
        ours = self.c.sign("new")
        state = self.read(f"session=bad; session={fork}; session={ours}")
        assert state.session_id is None and state.present
        assert state.legacy is not None
        assert state.legacy.kind is LegacyKind.SESSION_REDIS
        assert self.read(f"session={ours}; session={fork}").session_id == "new"

    def test_only_invalid_cookies_are_no_cookie(self) -> None:
        state = self.read("session=bad; session=worse")
        assert (state.session_id, state.present, state.legacy) == (None, False, None)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestRateLimitedLog:
    def test_one_warning_a_minute_then_debug_with_a_count(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = _Clock()
        logger = logging.getLogger("tests.ratelimited")
        say = RateLimitedLog(logger, clock=clock)
        with caplog.at_level(logging.DEBUG, logger="tests.ratelimited"):
            for _ in range(1000):
                say("bad cookie")
                clock.now += 0.05  # 1000 in 50 seconds
            clock.now += 11  # over a minute after the first warning
            say("bad cookie")
        levels = [r.levelno for r in caplog.records]
        assert levels.count(logging.WARNING) == 2
        assert levels.count(logging.DEBUG) == 999
        first, second = (r for r in caplog.records if r.levelno == logging.WARNING)
        assert first.getMessage() == "bad cookie"
        assert second.getMessage().startswith("bad cookie (and 999 more since")
        assert caplog.records[-1] is second

    def test_the_count_starts_again_after_each_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = _Clock()
        say = RateLimitedLog(logging.getLogger("tests.ratelimited"), 60, clock)
        with caplog.at_level(logging.WARNING, logger="tests.ratelimited"):
            for step in (0, 1, 2, 61, 62, 200):
                clock.now = 1000.0 + step
                say("x")
        assert [r.getMessage()[:12] for r in caplog.records] == [
            "x",
            "x (and 2 mor",
            "x (and 1 mor",
        ]

    def test_invalid_cookies_go_through_it(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from pyramid_redis_sessions import cookies

        clock = _Clock()
        monkeypatch.setattr(
            cookies, "log_invalid_cookie", RateLimitedLog(cookies.log, clock=clock)
        )
        with caplog.at_level(logging.DEBUG, logger="pyramid_redis_sessions"):
            for _ in range(50):
                codec().read(Request.blank("/", headers={"Cookie": "session=bad"}))
        levels = [r.levelno for r in caplog.records]
        assert levels == [logging.WARNING] + [logging.DEBUG] * 49
