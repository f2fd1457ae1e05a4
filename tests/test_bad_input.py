"""Bad cookies and bad stored values: a fresh session, never an error page,
and never a byte of them unpickled."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import webtest

from pyramid_redis_sessions import RedisSessionFactory
from pyramid_redis_sessions.values import CREATED
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
    assert "Max-Age=0" in res.headers["Set-Cookie"]


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


def test_latin1_cookie_header_that_webob_cannot_decode(
    app: App, round_trips: RoundTripCounter, caplog: pytest.LogCaptureFixture
) -> None:
    testapp = app()
    with caplog.at_level(logging.WARNING):
        res = testapp.get(
            "/do?op=get:a&op=set:b:2",
            extra_environ={"HTTP_COOKIE": 'session="\xe9\xff"'},
        )
    assert results(res) == [None, None]
    assert round_trips.commands == [["EVALSHA"]]  # a new session is created
    assert "could not be parsed" in caplog.text


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
