"""A real server killed, hung (SIGSTOP) and restarted under a running app."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import webtest

from pyramid_redis_sessions.client import worst_case_seconds
from pyramid_redis_sessions.exceptions import SessionStoreError, SessionStoreUnavailable
from pyramid_redis_sessions.store import RedisStore
from pyramid_redis_sessions.views import RETRY_AFTER
from tests.app import factory, make_app, make_included_app, results
from tests.servers import BaseServer, ServerProcess

#: SPEC: a request that needs a dead or hung Redis fails in under 10 s.
BOUND = 10.0
#: A refused connection fails at once; retries with backoff add milliseconds.
KILLED_BOUND = 2.0


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


# -- through the app as users configure it: the 503 view included -----------


def _included(server: BaseServer, prefix: str, **settings: Any) -> webtest.TestApp:
    given = {"url": server.url, "prefix": prefix, **settings}
    return make_included_app({f"redis.sessions.{k}": v for k, v in given.items()})


def _never_cleared(responses: list[webtest.TestResponse]) -> None:
    """No response logged the user out: no cookie deleted, none replaced."""
    for res in responses:
        assert "Set-Cookie" not in res.headers, (res.status, res.headers)


def _logged_once_per_failure(
    caplog: pytest.LogCaptureFixture, failures: int, server: str, session_id: str
) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == failures
    assert all(server in r.getMessage() for r in errors)
    assert all(session_id not in r.getMessage() for r in caplog.records)


def test_killed_server_is_a_fast_503_and_the_user_stays_logged_in(
    server: BaseServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    if not server.owned:
        pytest.skip("needs a server this suite started (it is saved and killed)")
    testapp = _included(server, prefix)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    # Kept on disk for the restart: the test server persists nothing itself.
    server.admin().save()
    server.kill()
    address = f"{server.host}:{server.port}"
    seen = []
    with caplog.at_level(logging.INFO):
        seen.append(testapp.get("/untouched", status=200))
        for query in ("op=get:a", "op=set:b:2", "op=invalidate", "op=regenerate"):
            started = time.monotonic()
            res = testapp.get(f"/do?{query}", status=503)
            assert time.monotonic() - started < KILLED_BOUND
            assert res.headers["Retry-After"] == str(RETRY_AFTER)
            assert address not in res.text
            seen.append(res)
    _never_cleared(seen)
    _logged_once_per_failure(caplog, 4, address, session_id)
    server.restart()
    (Path(server.workdir) / "dump.rdb").unlink()
    res = testapp.get("/do?op=get:a&op=id")
    assert results(res) == ["1", session_id]
    _never_cleared([res])


def test_new_session_written_while_the_server_is_dead_is_a_503_not_a_500(
    server: BaseServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The write happens at the end of the request, in a response callback,
    outside Pyramid's exception views: the session answers with the view."""
    testapp = _included(server, prefix)
    server.kill()
    with caplog.at_level(logging.INFO):
        res = testapp.get("/do?op=set:a:1", status=503)
    assert res.headers["Retry-After"] == str(RETRY_AFTER)
    assert "Set-Cookie" not in res.headers
    assert "session store is unavailable" in res.text
    _logged_once_per_failure(caplog, 1, f"{server.host}:{server.port}", "-")
    server.restart()
    assert "session=" in testapp.get("/do?op=set:a:1").headers["Set-Cookie"]


def test_save_failure_without_the_503_view_propagates(
    server: BaseServer, prefix: str
) -> None:
    testapp = make_app(factory(server.url, prefix))
    server.kill()
    with pytest.raises(SessionStoreUnavailable):
        testapp.get("/do?op=set:a:1")


def test_hung_server_is_a_503_within_the_configured_bound(
    server: BaseServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "retries": 1}
    testapp = _included(server, prefix, **options)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    bound = worst_case_seconds(1, 0.5, 0.5)
    server.stop()
    seen = []
    try:
        with caplog.at_level(logging.INFO):
            seen.append(testapp.get("/untouched", status=200))
            for query in ("op=get:a", "op=set:b:2"):
                started = time.monotonic()
                seen.append(testapp.get(f"/do?{query}", status=503))
                # The formula's worst case, plus room for a loaded machine.
                assert time.monotonic() - started < bound + 2.0
    finally:
        server.cont()
    _never_cleared(seen)
    _logged_once_per_failure(caplog, 2, f"{server.host}:{server.port}", session_id)
    res = testapp.get("/do?op=get:a&op=set:c:3")
    assert results(res)[0] == "1"
    _never_cleared([res])


def test_a_read_only_replica_is_a_503_not_a_missing_session(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    """During a failover a client may meet a replica: its "no such session"
    would log the user out; READONLY makes it a transient fault instead."""
    if not isinstance(server, ServerProcess):
        pytest.skip("starts a replica of a server this suite started")
    replica = ServerProcess(
        server.name,
        server.binary,
        tmp_path,
        args=("--replicaof", server.host, str(server.port)),
    )
    replica.start()
    try:
        writer = make_included_app(
            {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix}
        )
        writer.get("/do?op=set:a:1")
        # The session is gone from the replica (as if not replicated yet).
        server.admin().delete(*server.admin().keys(prefix + "*"))
        deadline = time.monotonic() + 5
        while replica.admin().keys(prefix + "*") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not replica.admin().keys(prefix + "*")
        reader = make_included_app(
            {"redis.sessions.url": replica.url, "redis.sessions.prefix": prefix}
        )
        reader.set_cookie("session", writer.cookies["session"])
        res = reader.get("/do?op=get:a", status=503)
        assert "Set-Cookie" not in res.headers
    finally:
        replica.close()
