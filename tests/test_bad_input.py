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
from pyramid_redis_sessions.values import ValueCodec
from tests.app import SECRET, factory, make_app, results
from tests.servers import BaseServer, RoundTripCounter

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
    app: App, server: BaseServer, prefix: str
) -> None:
    foreign = make_app(
        RedisSessionFactory("another-secret", url=server.url, prefix=prefix)
    )
    cookie = valid_cookie(foreign)
    testapp = app()
    res = testapp.get("/do?op=get:a&op=new", headers={"Cookie": f"session={cookie}"})
    assert results(res) == [None, True]


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
    assert round_trips.commands == [["SET"]]
    assert "could not be parsed" in caplog.text


class _CreatesFile:
    """Pickles to a call of ``open(path, 'w')``: loading it creates a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _evil_payload(path: Path) -> bytes:
    envelope = {
        "managed_dict": {"x": _CreatesFile(path)},
        "created": 1.0,
        "timeout": 1200,
    }
    return pickle.dumps(envelope)


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


FORGERS: dict[str, Callable[[str, bytes], bytes]] = {
    "unsigned": lambda sid, payload: payload,
    "another secret": lambda sid, payload: ValueCodec("not-it").seal(sid, payload),
    "another session's id": lambda sid, payload: ValueCodec(SECRET).seal(
        "some-other-id", payload
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
    value = FORGERS[forger](session_id, _evil_payload(marker))
    server.client().set(prefix + session_id, value, ex=1200)
    _assert_fresh_and_logged(testapp, server, prefix, session_id, caplog)
    assert not marker.exists()


def test_the_same_pickle_signed_with_the_secret_would_run(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    """Control for the test above: the payload is live, the MAC is the wall."""
    marker = tmp_path / "pwned"
    testapp = make_app(factory(server.url, prefix, detect_changes=False))
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    sealed = ValueCodec(SECRET).seal(session_id, _evil_payload(marker))
    server.client().set(prefix + session_id, sealed, ex=1200)
    testapp.get("/do?op=get:a")
    assert marker.exists()


BAD_VALUES: dict[str, Callable[[str], Any]] = {
    "garbage": lambda sid: b"\x00garbage",
    "empty": lambda sid: b"",
    "header only": lambda sid: b"PRS1",
    "truncated mac": lambda sid: ValueCodec(SECRET).seal(sid, b"x")[:20],
    "signed, not a pickle": lambda sid: ValueCodec(SECRET).seal(sid, b"not a pickle"),
    "signed, wrong envelope": lambda sid: ValueCodec(SECRET).seal(
        sid, pickle.dumps(["not", "a", "dict"])
    ),
    "signed, envelope lacks fields": lambda sid: ValueCodec(SECRET).seal(
        sid, pickle.dumps({"managed_dict": {}, "created": "yesterday"})
    ),
    "list key": lambda sid: [b"a", b"b"],
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
    value = BAD_VALUES[kind](session_id)
    _session_with_value_at(server, prefix + session_id, value)
    _assert_fresh_and_logged(testapp, server, prefix, session_id, caplog)


def _session_with_value_at(server: BaseServer, key: str, value: Any) -> None:
    client = server.client()
    client.delete(key)
    if isinstance(value, list):
        client.rpush(key, *value)
    else:
        client.set(key, value, ex=1200)


def test_value_of_another_serializer_is_no_session(
    server: BaseServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    pickled = make_app(factory(server.url, prefix))
    session_id = results(pickled.get("/do?op=set:a:1&op=id"))[1]
    as_json = make_app(factory(server.url, prefix, serializer="json"))
    as_json.cookiejar = pickled.cookiejar
    _assert_fresh_and_logged(as_json, server, prefix, session_id, caplog)
