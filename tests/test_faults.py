"""A real server killed, hung (SIGSTOP) and restarted under a running app."""

from __future__ import annotations

import time

import pytest

from pyramid_redis_sessions.exceptions import SessionStoreError, SessionStoreUnavailable
from pyramid_redis_sessions.store import RedisStore
from tests.app import factory, make_app, results
from tests.servers import BaseServer

#: SPEC: a request that needs a dead or hung Redis fails in under 10 s.
BOUND = 10.0


def test_hung_server_fails_only_requests_that_touch_the_session(
    server: BaseServer, prefix: str
) -> None:
    testapp = make_app(factory(server.url, prefix, socket_timeout=0.5))
    testapp.get("/do?op=set:a:1")
    server.stop()
    try:
        assert testapp.get("/untouched").text == "untouched"
        started = time.monotonic()
        with pytest.raises(SessionStoreUnavailable) as info:
            testapp.get("/do?op=get:a")
        assert time.monotonic() - started < BOUND
        assert f"{server.host}:{server.port}" in str(info.value)
    finally:
        server.cont()
    assert results(testapp.get("/do?op=get:a")) == ["1"]


def test_killed_server_fails_fast_and_recovers_after_restart(
    server: BaseServer, prefix: str
) -> None:
    testapp = make_app(factory(server.url, prefix))
    testapp.get("/do?op=set:a:1")
    server.kill()
    assert testapp.get("/untouched").text == "untouched"
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable, match=f"{server.host}:{server.port}"):
        testapp.get("/do?op=get:a")
    assert time.monotonic() - started < BOUND
    server.restart()
    # The restarted server kept nothing; the app works again without restart.
    assert results(testapp.get("/do?op=get:a&op=new")) == [None, True]
    assert results(testapp.get("/do?op=set:b:2&op=get:b")) == [None, "2"]


def test_unavailable_is_a_redis_connection_error_too(server: BaseServer) -> None:
    import redis.exceptions

    store = RedisStore(server.client(socket_timeout=0.5), "p:")
    server.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        store.load("x", 10, None, time.time())


def test_server_error_reply_is_a_store_error(server: BaseServer, prefix: str) -> None:
    store = RedisStore(server.client(), prefix)
    store.create("x", [b"f", b"v"], 10)
    with pytest.raises(SessionStoreError, match="answered with an error"):
        store.save("x", [b"f", b"w"], [], "soon")  # type: ignore[arg-type]
