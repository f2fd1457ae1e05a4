"""Bad cookies and bad stored values: a fresh session, never an error page,
and never a byte of them unpickled."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import webtest
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request

from pyramid_redis_sessions import RedisSessionFactory, SessionFactory
from pyramid_redis_sessions.cookies import log_invalid_cookie
from pyramid_redis_sessions.values import (
    CREATED,
    TIMEOUT,
    BadValue,
    parse_created,
    parse_timeout,
)
from tests.app import factory, make_app, results
from tests.servers import BaseServer, RoundTripCounter
from tests.stored import evil_pickle, fields, seal

App = Callable[..., webtest.TestApp]


def valid_cookie(testapp: webtest.TestApp) -> str:
    value: str = testapp.get("/do?op=set:a:1").headers["Set-Cookie"]
    return value.split(";")[0].split("=", 1)[1]


def _flip(value: str) -> str:
    i = len(value) // 2
    return value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1 :]


BAD_COOKIES: dict[str, Callable[[str], str]] = {
    "garbage": lambda good: "garbage!!",
    "tampered": _flip,
    "truncated": lambda good: good[:-5],
    "too long": lambda good: good + "A" * 5000,
    "empty": lambda good: "",
    "non-ascii": lambda good: good[:-1] + "é",
}


@pytest.mark.parametrize("kind", list(BAD_COOKIES))
def test_bad_cookie_is_a_fresh_session_without_redis(
    app: App, round_trips: RoundTripCounter, kind: str
) -> None:
    testapp = app()
    good = valid_cookie(testapp)
    testapp.cookiejar.clear()
    cookie = BAD_COOKIES[kind](good)
    round_trips.reset()
    res = testapp.get(
        "/do?op=get:a&op=new",
        headers={"Cookie": f"session={cookie}".encode().decode("latin-1")},
    )
    assert results(res) == [None, True]
    assert round_trips.count == 0
    assert "Set-Cookie" not in res.headers, "a cookie that is not ours stays"


def test_cookie_signed_with_another_secret_is_ignored(
    app: App, server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> None:
    foreign = make_app(
        RedisSessionFactory("another-secret", url=server.url, prefix=prefix)
    )
    cookie = valid_cookie(foreign)
    testapp = app()
    res = testapp.get("/do?op=get:a&op=new", headers={"Cookie": f"session={cookie}"})
    assert results(res) == [None, True]
    assert round_trips.count == 0  # the signature, not Redis, turned it away


@pytest.mark.parametrize(
    "header", ['session="\xe9\xff"', 'o="\xe9\xff"; session=x', 'session=x; o="\xe9"']
)
def test_latin1_cookie_header_that_webob_cannot_decode(
    app: App,
    round_trips: RoundTripCounter,
    caplog: pytest.LogCaptureFixture,
    header: str,
) -> None:
    with pytest.raises(UnicodeDecodeError):  # WebOb's own parsing
        Request.blank("/", environ={"HTTP_COOKIE": header}).cookies.get("session")
    testapp = app()
    log_invalid_cookie.reset()
    with caplog.at_level(logging.WARNING):
        res = testapp.get(
            "/do?op=get:a&op=set:b:2", extra_environ={"HTTP_COOKIE": header}
        )
    assert results(res) == [None, None]
    assert round_trips.commands == [["EVALSHA"]]  # a new session is created
    assert "session cookie is not valid" in caplog.text


def _assert_fresh_and_logged(
    testapp: webtest.TestApp,
    server: BaseServer,
    prefix: str,
    session_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pyramid_redis_sessions"):
        res = testapp.get("/do?op=get:a&op=new")
    assert results(res) == [None, True]
    assert "Max-Age=0" in res.headers["Set-Cookie"]
    assert not server.client().exists(prefix + session_id), "bad key is deleted"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert prefix in message and "sha256:" in message
    assert session_id not in message
    # A write then starts a fresh id.
    new_id = results(testapp.get("/do?op=set:b:2&op=id"))[1]
    assert new_id != session_id


#: Ways to put an attacker's bytes into field ``x`` of a live session
#: without the app's secret: (session id, payload) -> (field, value).
FORGERS: dict[str, Callable[[str, bytes], tuple[bytes, bytes]]] = {
    "unsigned": lambda sid, payload: (b"x", payload),
    "signed with another secret": lambda sid, payload: (
        b"x",
        seal(sid, b"x", payload, secret="not-it"),
    ),
    "copied from another session": lambda sid, payload: (
        b"x",
        seal("some-other-id", b"x", payload),
    ),
    "copied from another field": lambda sid, payload: (
        b"x",
        seal(sid, b"y", payload),
    ),
    "as a flash message, unsigned": lambda sid, payload: (
        b"\xffflash:0000000000000000000000000000:",
        payload,
    ),
}


@pytest.mark.parametrize("forger", list(FORGERS))
def test_pickle_written_without_the_secret_is_never_loaded(
    app: App,
    server: BaseServer,
    prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    forger: str,
) -> None:
    marker = tmp_path / "pwned"
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    field, value = FORGERS[forger](session_id, evil_pickle(marker))
    server.client().hset(prefix + session_id, field, value)
    _assert_fresh_and_logged(testapp, server, prefix, session_id, caplog)
    assert not marker.exists()


def test_the_same_pickle_signed_with_the_secret_would_run(
    app: App, server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    """Control for the test above: the payload is live, the MAC is the wall."""
    marker = tmp_path / "pwned"
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    forged = seal(session_id, b"x", evil_pickle(marker))
    server.client().hset(prefix + session_id, b"x", forged)
    with pytest.raises(TypeError):  # the view has no use for the file object
        testapp.get("/do?op=len:x")
    assert marker.exists()


def _replace_field(field: bytes, make: Callable[[str], bytes]) -> Any:
    def change(server: BaseServer, key: str, session_id: str) -> None:
        server.client().hset(key, field, make(session_id))

    return change


def _replace_key(kind: str) -> Any:
    def change(server: BaseServer, key: str, session_id: str) -> None:
        client = server.client()
        client.delete(key)
        if kind == "list":
            client.rpush(key, b"a", b"b")
        else:
            client.set(key, b"\x80\x05garbage", ex=1200)

    return change


#: Ways a stored session can be wrong: (server, key, id) -> None.
BAD_VALUES: dict[str, Callable[[BaseServer, str, str], None]] = {
    "garbage field": _replace_field(b"a", lambda sid: b"\x00garbage"),
    "empty field": _replace_field(b"a", lambda sid: b""),
    "version only": _replace_field(b"a", lambda sid: b"\x02"),
    "truncated tag": _replace_field(b"a", lambda sid: seal(sid, b"a", b"x")[:10]),
    "signed, not a pickle": _replace_field(
        b"a", lambda sid: seal(sid, b"a", b"not a pickle")
    ),
    "signed, creation time not a number": _replace_field(
        CREATED, lambda sid: seal(sid, CREATED, b"yesterday")
    ),
    "no creation time": lambda server, key, sid: server.client().hdel(key, CREATED),
    "a string key (the superseded whole-value format)": _replace_key("string"),
    "a list key": _replace_key("list"),
}


@pytest.mark.parametrize("kind", list(BAD_VALUES))
def test_stored_value_that_will_not_load_is_no_session(
    app: App,
    server: BaseServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    BAD_VALUES[kind](server, prefix + session_id, session_id)
    _assert_fresh_and_logged(testapp, server, prefix, session_id, caplog)


def test_value_of_another_serializer_is_no_session(
    server: BaseServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    pickled = make_app(factory(server.url, prefix))
    session_id = results(pickled.get("/do?op=set:a:1&op=id"))[1]
    as_json = make_app(factory(server.url, prefix, serializer="json"))
    as_json.cookiejar = pickled.cookiejar
    _assert_fresh_and_logged(as_json, server, prefix, session_id, caplog)


def test_a_field_that_verifies_is_used_as_is(
    app: App, server: BaseServer, prefix: str
) -> None:
    """Control for the tests above: the app reads fields sealed its way."""
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    key = prefix + session_id
    server.client().hset(key, b"b", seal(session_id, b"b", pickle.dumps("2")))
    assert results(testapp.get("/do?op=get:a&op=get:b")) == ["1", "2"]
    assert set(fields(server, key)) == {CREATED, b"a", b"b"}


# -- reserved numbers written without the secret --------------------------------

#: Stored numbers the application never writes: each once made the load
#: script's EXPIRE fail (a 500 on every request of the session), delete the
#: key, drop its expiry, or went unchecked to the client.
FORGED_TIMEOUTS = [
    b"1.5",
    b"1e20",
    b"inf",
    b"nan",
    b"abc",
    b"-5",
    b"9" * 400,
    b"10000000001",  # one over values.MAX_SECONDS
    b"05",
    b"",
]
FORGED_CREATED = [
    b"1e20",
    b"inf",
    b"nan",
    b"abc",
    b"-5",
    b"9" * 400,
    b"1733352540",  # str(int), not repr(float)
    b"",
]
#: How the forged payload is laid out: sealed with the secret (what only
#: the application, or someone with its secret, writes), with a tag of the
#: right shape that does not verify, or bare.
SHAPES: dict[str, Callable[[str, bytes, bytes], bytes]] = {
    "sealed": lambda sid, field, payload: seal(sid, field, payload),
    "wrong tag": lambda sid, field, payload: b"\x02" + b"\x5a" * 16 + payload,
    "bare": lambda sid, field, payload: payload,
}


def _forged_number_cases() -> list[Any]:
    return [
        pytest.param(field, payload, shape, id=f"{name}={payload[:12]!r}-{shape}")
        for field, name, payloads in (
            (TIMEOUT, "timeout", FORGED_TIMEOUTS),
            (CREATED, "created", FORGED_CREATED),
        )
        for payload in payloads
        for shape in SHAPES
    ]


@pytest.mark.parametrize("absolute_timeout", [None, 3600], ids=["sliding", "absolute"])
@pytest.mark.parametrize(("field", "payload", "shape"), _forged_number_cases())
def test_forged_reserved_number_is_a_bad_value_not_a_500(
    app: App,
    server: BaseServer,
    prefix: str,
    round_trips: RoundTripCounter,
    caplog: pytest.LogCaptureFixture,
    field: bytes,
    payload: bytes,
    shape: str,
    absolute_timeout: int | None,
) -> None:
    testapp = app(absolute_timeout=absolute_timeout)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    key = prefix + session_id
    client = server.client()
    value = SHAPES[shape](session_id, field, payload)
    client.hset(key, field, value)
    client.expire(key, 500)
    # The load script hands the fields over, and leaves the expiry alone
    # unless what it reads as the number (after a header's 17 bytes) is in
    # the application's form: then it is bounded, and slides as usual.
    made: SessionFactory = testapp.app.registry.queryUtility(ISessionFactory)
    assert made.store is not None
    stored = made.store.load(
        session_id, made.timeout, made.absolute_timeout, time.time()
    )
    assert stored[field] == value
    try:
        (parse_created if field == CREATED else parse_timeout)(value[17:])
    except BadValue:
        assert 400 < client.ttl(key) <= 500, "the expiry is untouched"
    else:
        assert 0 < client.ttl(key) <= 10**10
    # The application rejects the session: the load, the bad key's DEL, and
    # the next request's write of a fresh session.
    round_trips.reset()
    _assert_fresh_and_logged(testapp, server, prefix, session_id, caplog)
    # A read is a bare HGETALL (the expiry slides lazily: values.SLID).
    assert round_trips.commands == [["HGETALL"], ["DEL"], ["EVALSHA"]]


@pytest.mark.parametrize("absolute_timeout", [None, 3600], ids=["sliding", "absolute"])
@pytest.mark.parametrize(
    ("field", "payload"),
    [(TIMEOUT, b"0"), (TIMEOUT, b"300"), (TIMEOUT, b"10000000000"), (CREATED, b"")],
    ids=["timeout=0", "timeout=300", "timeout=max", "created=now"],
)
def test_reserved_numbers_as_the_application_writes_them_load(
    app: App,
    server: BaseServer,
    prefix: str,
    field: bytes,
    payload: bytes,
    absolute_timeout: int | None,
) -> None:
    """Control for the test above: the forms the application writes slide
    the expiry and load (with ``slide_interval=0``, the load script slides
    it on every read)."""
    testapp = app(absolute_timeout=absolute_timeout, slide_interval=0)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    key = prefix + session_id
    client = server.client()
    payload = payload or repr(time.time()).encode()
    client.hset(key, field, seal(session_id, field, payload))
    client.expire(key, 5)
    assert results(testapp.get("/do?op=get:a&op=new")) == ["1", False]
    ttl = client.ttl(key)
    expected = {b"0": -1, b"300": 300, b"10000000000": 10**10}.get(payload, 1200)
    if absolute_timeout is not None and (expected < 0 or expected > 3600):
        expected = 3600
    assert expected - 5 < ttl <= expected


# -- several session cookies (cookie tossing) ------------------------------------


@pytest.mark.parametrize("order", ["planted first", "planted last"])
@pytest.mark.parametrize("planted", ["garbage!!", "", "tampered"])
def test_a_planted_cookie_beside_the_valid_one_changes_nothing(
    app: App,
    server: BaseServer,
    prefix: str,
    round_trips: RoundTripCounter,
    order: str,
    planted: str,
) -> None:
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    mine = testapp.cookies["session"]
    testapp.cookiejar.clear()
    if planted == "tampered":
        planted = _flip(valid_cookie(app()))
        testapp.cookiejar.clear()
    pair = [f"session={planted}", f"session={mine}"]
    header = "; ".join(pair if order == "planted first" else pair[::-1])
    round_trips.reset()
    res = testapp.get("/do?op=get:a&op=new&op=id", headers={"Cookie": header})
    assert results(res) == ["1", False, session_id]
    assert "Set-Cookie" not in res.headers, "no deletion, no new cookie"
    assert round_trips.count == 1
    # A write goes to the same session, and still sets no cookie.
    res = testapp.get("/do?op=set:b:2&op=id", headers={"Cookie": header})
    assert results(res)[1] == session_id and "Set-Cookie" not in res.headers
    assert server.client().exists(prefix + session_id)


def test_a_planted_valid_cookie_after_the_users_one_is_not_used(
    app: App, server: BaseServer, prefix: str
) -> None:
    """Two cookies that verify (one planted by a sibling subdomain for a
    session its owner made): the first one the browser sends is used, as the
    browser sends the more specific, or older, cookie first."""
    testapp = app()
    mine = results(testapp.get("/do?op=set:who:me&op=id"))[1]
    my_cookie = testapp.cookies["session"]
    other = app()
    results(other.get("/do?op=set:who:attacker"))
    theirs = other.cookies["session"]
    testapp.cookiejar.clear()
    header = f"session={my_cookie}; session={theirs}"
    res = testapp.get("/do?op=get:who&op=id", headers={"Cookie": header})
    assert results(res) == ["me", mine]
    assert "Set-Cookie" not in res.headers


def test_a_verified_cookie_whose_session_is_gone_is_still_cleared(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    mine = testapp.cookies["session"]
    testapp.cookiejar.clear()
    server.client().delete(prefix + session_id)
    res = testapp.get(
        "/do?op=get:a&op=new", headers={"Cookie": f"session=planted; session={mine}"}
    )
    assert results(res) == [None, True]
    assert "Max-Age=0" in res.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("field", "payload"),
    [
        (TIMEOUT, b"0"),
        (TIMEOUT, b"10000000000"),
        (CREATED, repr(time.time() + 10**8).encode()),
    ],
    ids=["timeout=0", "timeout=max", "created=future"],
)
def test_a_reserved_number_in_the_right_form_without_the_secret_is_refused(
    app: App,
    server: BaseServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    field: bytes,
    payload: bytes,
) -> None:
    """Reserved fields are MAC-checked like every other before the session
    uses them: no unsigned number from Redis lengthens a session. (One that
    puts it past its deadline ends it in the load script, as a ``DEL`` by
    the same writer would.)"""
    testapp = app(absolute_timeout=3600)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    forged = seal(session_id, field, payload, secret="not-it")
    server.client().hset(prefix + session_id, field, forged)
    _assert_fresh_and_logged(testapp, server, prefix, session_id, caplog)
