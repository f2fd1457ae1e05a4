"""A real server killed, hung (SIGSTOP) and restarted under a running app."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
import webtest
from pyramid.response import Response

from pyramid_redis_sessions.client import error_code, is_transient, worst_case_seconds
from pyramid_redis_sessions.exceptions import SessionStoreError, SessionStoreUnavailable
from pyramid_redis_sessions.store import RedisStore
from pyramid_redis_sessions.views import RETRY_AFTER
from tests.app import factory, make_app, make_included_app, results
from tests.servers import BaseServer, ServerProcess
from tests.topologies import wait_until

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


# -- refusals that pass: a 503 with Retry-After, the cookie kept ---------------


@contextlib.contextmanager
def _configured(server: BaseServer, **changes: Any) -> Iterator[None]:
    """``CONFIG SET`` on a server this suite started, undone afterwards."""
    if not server.owned:
        pytest.skip("reconfigures a server this suite started")
    admin = server.admin()
    before = {name: admin.config_get(name)[name] for name in changes}
    for name, value in changes.items():
        admin.config_set(name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            admin.config_set(name, value)


def _refused(res: webtest.TestResponse) -> None:
    assert res.status_int == 503, res.status
    assert res.headers["Retry-After"] == str(RETRY_AFTER)
    assert "Set-Cookie" not in res.headers  # nobody is logged out


def test_noreplicas_is_a_503_for_a_read_and_a_save(
    server: BaseServer, prefix: str
) -> None:
    """``min-replicas-to-write`` on a master left without a replica: every
    write answers NOREPLICAS, a slide due included; a read with no slide due
    is a bare HGETALL, which still works."""
    testapp = _included(server, prefix)
    testapp.get("/do?op=set:a:1")
    newcomer = _included(server, prefix)
    with _configured(server, **{"min-replicas-to-write": 1}):
        assert results(testapp.get("/do?op=get:a")) == ["1"]
        _refused(testapp.get("/do?op=set:a:2", expect_errors=True))
        _refused(newcomer.get("/do?op=set:b:2", expect_errors=True))
    assert results(testapp.get("/do?op=get:a")) == ["1"]


def test_oom_is_a_503_for_a_new_session_and_reads_still_work(
    server: BaseServer, prefix: str
) -> None:
    """``maxmemory`` reached under ``noeviction``: Redis refuses commands that
    grow memory (a new session), while a read, which only slides the
    expiry, is served."""
    testapp = _included(server, prefix)
    testapp.get("/do?op=set:a:1")
    newcomer = _included(server, prefix)
    with _configured(server, **{"maxmemory-policy": "noeviction", "maxmemory": 1}):
        assert results(testapp.get("/do?op=get:a")) == ["1"]
        _refused(newcomer.get("/do?op=set:b:2", expect_errors=True))
    assert "Set-Cookie" in newcomer.get("/do?op=set:b:2").headers


def test_busy_is_a_503(server: BaseServer, prefix: str) -> None:
    """A script that runs past ``busy-reply-threshold``: Redis answers every
    other command BUSY until it ends."""
    testapp = _included(server, prefix)
    testapp.get("/do?op=set:a:1")
    spinner = server.client(socket_timeout=10)
    started = threading.Event()

    def spin() -> None:
        started.set()
        with contextlib.suppress(redis.exceptions.ResponseError):
            spinner.eval("while true do end", 0)

    with _configured(server, **{"lua-time-limit": 10}):
        thread = threading.Thread(target=spin)
        thread.start()
        try:
            started.wait()
            deadline = time.monotonic() + 5
            while True:  # until the script is past the threshold
                try:
                    server.admin().ping()
                except redis.exceptions.ResponseError as e:
                    assert str(e).startswith("BUSY")
                    break
                assert time.monotonic() < deadline
                time.sleep(0.01)
            _refused(testapp.get("/do?op=get:a", expect_errors=True))
            _refused(testapp.get("/do?op=set:a:2", expect_errors=True))
        finally:
            server.client().script_kill()
            thread.join()
    assert results(testapp.get("/do?op=get:a")) == ["1"]


def _replica(server: BaseServer, tmp_path: Path, *args: str) -> ServerProcess:
    if not isinstance(server, ServerProcess):
        pytest.skip("starts a replica of a server this suite started")
    replica = ServerProcess(server.name, server.binary, tmp_path, args=args)
    replica.start()
    return replica


def test_a_read_only_replica_is_a_503_for_a_save(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    """An app pointed at a replica (as during a failover): a new session and
    a change to a replicated one are refused READONLY, a 503 each."""
    replica = _replica(server, tmp_path, "--replicaof", server.host, str(server.port))
    try:
        wait_until(
            lambda: replica.admin().info("replication")["master_link_status"] == "up",
            "the replica to sync",
        )
        writer = _included(server, prefix)
        writer.get("/do?op=set:a:1")
        wait_until(
            lambda: (
                int(replica.admin().info("replication")["slave_repl_offset"])
                >= int(server.admin().info("replication")["master_repl_offset"])
            ),
            "the replica to catch up",
        )
        reader = make_included_app(
            {"redis.sessions.url": replica.url, "redis.sessions.prefix": prefix}
        )
        reader.set_cookie("session", writer.cookies["session"])
        _refused(reader.get("/do?op=set:a:2", expect_errors=True))
        # A read with no slide due is a bare HGETALL, which a replica answers.
        assert results(reader.get("/do?op=get:a")) == ["1"]
        newcomer = make_included_app(
            {"redis.sessions.url": replica.url, "redis.sessions.prefix": prefix}
        )
        _refused(newcomer.get("/do?op=set:b:2", expect_errors=True))
    finally:
        replica.close()
    assert results(writer.get("/do?op=get:a")) == ["1"]


def test_a_replica_that_lost_its_master_is_a_503(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    """MASTERDOWN: a replica told not to serve stale data, whose master is
    gone (here: a port nothing listens on)."""
    from tests.servers import free_port

    replica = _replica(server, tmp_path, "--replicaof", server.host, str(free_port()))
    try:
        # Set once it runs: the harness waits for a PONG, not a MASTERDOWN.
        replica.admin().config_set("replica-serve-stale-data", "no")
        writer = _included(server, prefix)
        writer.get("/do?op=set:a:1")
        settings = {"redis.sessions.url": replica.url, "redis.sessions.prefix": prefix}
        reader = make_included_app(settings)
        reader.set_cookie("session", writer.cookies["session"])
        _refused(reader.get("/do?op=get:a", expect_errors=True))
        _refused(make_included_app(settings).get("/do?op=set:b:2", expect_errors=True))
    finally:
        replica.close()


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        # Redis 6.2 wraps the error of a script's redis.call in an ERR
        # (recorded from redis-server 6.2.14).
        (
            "Error running script (call to f_5833ae54af7d8f94b7c847a4cb5b6b700ba1bb1f)"
            ": @user_script:13: @user_script: 13: -OOM command not allowed when "
            "used memory > 'maxmemory'.",
            "OOM",
        ),
        (
            "Error running script (call to f_5833ae54af7d8f94b7c847a4cb5b6b700ba1bb1f)"
            ": @user_script:6: @user_script: 6: -NOREPLICAS Not enough good "
            "replicas to write.",
            "NOREPLICAS",
        ),
        (
            "Error running script (call to f_f4cbab23e7537bd47f4c0cf539b52fde0e9b7c6b)"
            ": @user_script:16: @user_script: 16: -READONLY You can't write "
            "against a read only replica.",
            "READONLY",
        ),
        (
            "NOREPLICAS Not enough good replicas to write. script: on @user_script:6.",
            "NOREPLICAS",
        ),
        ("Busy? BUSY is only a code as the first word", None),
        ("unknown command 'X', with args beginning with: ", None),
    ],
)
def test_the_code_of_an_error_reply_is_its_first_word(
    reply: str, code: str | None
) -> None:
    error = redis.exceptions.ResponseError(reply)
    assert error_code(error) == code
    assert is_transient(error) == (code is not None)


# -- errors while saving go through the application's exception views ---------


def _with_view(context: type, status: int) -> Any:
    def view(exc: Exception, request: Any) -> Response:
        return Response(f"own view: {type(exc).__name__}", status=status)

    def register(config: Any) -> None:
        config.add_exception_view(view, context=context)

    return register


def test_the_apps_view_for_store_errors_renders_a_failed_save(
    server: BaseServer, prefix: str
) -> None:
    """A user that may not HSET: the save's script is refused NOPERM, an
    error that does not pass, and the app's own view answers."""
    if not server.owned:
        pytest.skip("creates an ACL user: needs a server this suite started")
    admin = server.admin()
    admin.execute_command(
        "ACL", "SETUSER", "nohset", "on", ">pw", "~*", "+@all", "-hset"
    )
    url = f"redis://nohset:pw@{server.host}:{server.port}/0"
    try:
        plain = make_included_app(
            {"redis.sessions.url": url, "redis.sessions.prefix": prefix}
        )
        with pytest.raises(SessionStoreError) as info:
            plain.get("/do?op=set:a:1")  # no view for it: a 500, as before
        assert not isinstance(info.value, SessionStoreUnavailable)
        settings = {"redis.sessions.url": url, "redis.sessions.prefix": prefix}
        testapp = make_included_app(settings, _with_view(SessionStoreError, 500))
        res = testapp.get("/do?op=set:a:1", status=500)
        assert res.text == "own view: SessionStoreError"
        assert "Set-Cookie" not in res.headers
    finally:
        admin.execute_command("ACL", "DELUSER", "nohset")


def test_the_apps_view_for_unavailability_replaces_the_503(
    server: BaseServer, prefix: str
) -> None:
    settings = {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix}
    testapp = make_included_app(settings, _with_view(SessionStoreUnavailable, 502))
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    with _configured(server, **{"min-replicas-to-write": 1}):
        res = testapp.get("/do?op=set:a:2", status=502)
    assert res.text == "own view: SessionStoreUnavailable"
    assert "Set-Cookie" not in res.headers
    assert results(testapp.get("/do?op=get:a&op=id")) == ["1", session_id]
