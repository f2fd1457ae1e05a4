"""The cookie holds only the signed session id."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pyramid.request import Request
from pyramid.response import Response
from webob.cookies import SignedSerializer

from pyramid_redis_sessions.cookies import CookieCodec, CookieSettings


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
    assert (bad.session_id, bad.present) == (None, True)
    good = c.read(Request.blank("/", headers={"Cookie": f"session={c.sign('id')}"}))
    assert (good.session_id, good.present, good.current) == ("id", True, True)


@pytest.mark.parametrize(
    "header",
    [
        "session={a}",  # our cookie alone: read without WebOb's parser
        "session={a}; other=1",  # everything else goes through WebOb
        "other=1; session={a}",
        "session={a}; session={b}",
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
    ],
)
def test_read_finds_the_cookie_webob_finds(header: str) -> None:
    c = codec()
    header = header.format(a=c.sign("A"), b=c.sign("B"))
    request = Request.blank("/", headers={"Cookie": header})
    value = request.cookies.get("session")
    state = c.read(request)
    assert state.present == (value is not None)
    assert state.session_id == (None if value is None else c.unsign(value)[0])


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
