"""The local cache (:mod:`pyramid_redis_sessions.localcache`) on real servers.

A hit costs no round trip; another OS process holding the same session
stops serving it once it changes, whatever changed it; an entry is never
served past its deadline, even when Redis has not expired the key yet; a
broken, killed, restarted or frozen tracking connection empties the cache,
reads go to Redis meanwhile, and it recovers; gunicorn's forked workers
each keep a cache of their own that stays fresh.

Real servers, real sockets, real processes; no sleep stands in for a
condition that can be polled.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import webtest
from pyramid.interfaces import ISessionFactory

import pyramid_redis_sessions.localcache as localcache
from pyramid_redis_sessions import SessionFactory
from pyramid_redis_sessions.localcache import LocalCache
from pyramid_redis_sessions.testing import RoundTripCounter
from tests.app import factory, make_app, results
from tests.proxy import FreezableProxy
from tests.servers import (
    LOOPBACK,
    BaseServer,
    ServerProcess,
    free_port,
    stop_process,
    wait_listening,
)

App = Callable[..., webtest.TestApp]
ROOT = Path(__file__).resolve().parent.parent
#: How long another process may take to stop serving a changed session.
DEADLINE = 2.0
START_TIMEOUT = 30.0


def poll(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """``check()`` until it returns something true; that. Fails after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.002)


def factory_of(testapp: webtest.TestApp) -> SessionFactory:
    found: SessionFactory = testapp.app.registry.queryUtility(ISessionFactory)
    return found


def cache_of(testapp: webtest.TestApp) -> LocalCache:
    store = factory_of(testapp).store
    assert store is not None and store.cache is not None, "the cache is off"
    return store.cache


def cookie_of(testapp: webtest.TestApp) -> str:
    """The ``Cookie`` header of the testapp's session."""
    return f"session={testapp.cookies['session']}"


def started(testapp: webtest.TestApp, ops: str = "op=set:a:1") -> str:
    """Run ``ops`` (which store a session), then read it twice, a miss then
    a hit: it is in the cache. Its id."""
    session_id: str = results(testapp.get(f"/do?{ops}&op=id"))[-1]
    cache = cache_of(testapp)
    before = cache.stats()
    testapp.get("/do?op=keys")
    testapp.get("/do?op=keys")
    after = cache.stats()
    assert (after["misses"], after["hits"]) == (
        before["misses"] + 1,
        before["hits"] + 1,
    ), (before, after)
    return session_id


def grew(before: dict[str, Any], after: dict[str, Any], **by: int) -> None:
    """Every counter of ``by`` grew by that much; the others of hits,
    misses, bypasses, flushes and connects did not change."""
    names = ("hits", "misses", "bypasses", "flushes", "connects")
    expected = {name: before[name] + by.get(name, 0) for name in names}
    assert {name: after[name] for name in names} == expected, (before, after)


@pytest.fixture
def own_server(server: BaseServer, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the same backend that this test starts, with DEBUG on,
    for tests that restart it, kill its clients or turn its expiry off."""
    if not server.owned or not isinstance(server, ServerProcess):
        pytest.skip(
            "needs a server binary this suite runs (REDIS_URL names an "
            "external server): the test starts, restarts and DEBUGs its own"
        )
    workdir = tmp_path / "own"
    workdir.mkdir()
    own = ServerProcess(
        f"{server.name}-own",
        server.binary,
        workdir,
        ["--enable-debug-command", "yes"],
    )
    try:
        own.start()
        yield own
    finally:
        own.close()


@contextlib.contextmanager
def active_expiry_off(server: ServerProcess) -> Iterator[None]:
    admin = server.admin()
    admin.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        yield
    finally:
        admin.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "1")


# -- 1. a hit is free ----------------------------------------------------------


def test_a_hit_costs_no_round_trip_and_a_miss_or_a_write_one(
    app: App, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    cache = cache_of(testapp)
    testapp.get("/do?op=set:a:1&op=set:b:2")

    round_trips.reset()
    before = cache.stats()
    assert results(testapp.get("/do?op=get:a&op=get:b")) == ["1", "2"]
    assert round_trips.commands == [["HGETALL"]]
    grew(before, cache.stats(), misses=1, connects=1)  # connected on first use

    round_trips.reset()
    before = cache.stats()
    assert results(testapp.get("/do?op=get:a&op=get:b")) == ["1", "2"]
    assert round_trips.commands == []
    grew(before, cache.stats(), hits=1)

    # A write after a hit: the save alone; it drops the entry.
    round_trips.reset()
    before = cache.stats()
    assert results(testapp.get("/do?op=get:a&op=set:a:3")) == ["1", None]
    assert round_trips.commands == [["EVALSHA"]]
    grew(before, cache.stats(), hits=1)
    assert cache.stats()["size"] == 0

    round_trips.reset()
    before = cache.stats()
    assert results(testapp.get("/do?op=get:a&op=get:b")) == ["3", "2"]
    assert round_trips.commands == [["HGETALL"]]
    grew(before, cache.stats(), misses=1)

    round_trips.reset()
    assert results(testapp.get("/do?op=items")) == [[["a", "3"], ["b", "2"]]]
    assert round_trips.commands == []


def test_a_write_to_the_same_key_in_another_database_only_costs_a_miss(
    app: App, server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> None:
    """Broadcast tracking covers the prefix in every database of the
    server (what "Running Redis" tells): a write of the same key name in
    database 1 drops the entry; the next read misses and finds the session
    of database 0 unchanged."""
    testapp = app()
    session_id = started(testapp, "op=set:a:1")
    cache = cache_of(testapp)
    other = redis.Redis.from_url(
        server.url.rsplit("/", 1)[0] + "/1", **server.connection_kwargs
    )
    key = f"{prefix}{session_id}"
    try:
        other.hset(key, "x", "y")
        assert cache.sync()  # the invalidation has come
        round_trips.reset()
        before = cache.stats()
        assert results(testapp.get("/do?op=get:a")) == ["1"]
        assert round_trips.commands == [["HGETALL"]]
        grew(before, cache.stats(), misses=1)
    finally:
        other.delete(key)
        other.close()


# -- 2. another process ----------------------------------------------------------


class Reader:
    """``tests.cache_reader`` in a process of its own."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cache_reader"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        assert self._line(START_TIMEOUT) == "READY"

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put("EOF")

    def _line(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the reader said nothing in {timeout} s") from None

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self._line(10)
        assert line != "EOF", "the reader exited"
        reply: dict[str, Any] = json.loads(line)
        assert "error" not in reply, reply["error"]
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def reader() -> Iterator[Reader]:
    started_reader = Reader()
    try:
        yield started_reader
    finally:
        started_reader.close()


CHANGES = [
    "set",
    "delete",
    "invalidate",
    "regenerate",
    "end_all",
    "direct_del",
    "expiry",
]


@pytest.mark.parametrize("change", CHANGES)
def test_another_process_stops_serving_a_changed_session(
    change: str, reader: Reader, app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app()
    ops = "op=set:a:1&op=bind:ann" if change == "end_all" else "op=set:a:1"
    session_id = results(testapp.get(f"/do?{ops}&op=id"))[-1]
    key = prefix + session_id
    cookie = cookie_of(testapp)

    def read() -> dict[str, Any]:
        return reader.ask(op="read", url=server.url, prefix=prefix, cookie=cookie)

    first = read()
    assert (first["hit"], first["new"], first["items"]) == (False, False, [["a", "1"]])
    second = read()
    assert (second["hit"], second["items"]) == (True, [["a", "1"]])

    gone: Callable[[dict[str, Any]], bool] = lambda seen: seen["new"]  # noqa: E731
    changed_at = 0.0
    if change == "set":
        testapp.get("/do?op=set:a:2")
        gone = lambda seen: seen["items"] == [["a", "2"]]  # noqa: E731
    elif change == "delete":
        testapp.get("/do?op=del:a")
        gone = lambda seen: not seen["new"] and seen["items"] == []  # noqa: E731
    elif change == "invalidate":
        testapp.get("/do?op=invalidate")
    elif change == "regenerate":
        new_id = results(testapp.get("/do?op=regenerate&op=id"))[-1]
        assert new_id != session_id
    elif change == "end_all":
        admin_tab = webtest.TestApp(testapp.app)  # another browser: log out
        assert results(admin_tab.get("/do?op=endall:ann")) == [1]
    elif change == "direct_del":
        assert server.client().delete(key) == 1
    else:
        assert change == "expiry"
        lifetime = 0.5
        assert server.client().pexpire(key, int(lifetime * 1000))
        changed_at = time.monotonic() + lifetime
        # PEXPIRE itself is a write that drops the entry; read it again so
        # that only the expiry's own message can drop it next.
        reader.ask(op="sync", url=server.url, prefix=prefix)
        read()
        again = read()
        assert (again["hit"], again["items"]) == (True, [["a", "1"]])
        assert time.monotonic() < changed_at, "too slow: the key expired already"
    changed_at = changed_at or time.monotonic()

    stale = 0

    def check() -> dict[str, Any] | None:
        nonlocal stale
        seen = read()
        if gone(seen):
            return seen
        assert seen["items"] == [["a", "1"]], seen
        if time.monotonic() >= changed_at:  # (an expiring key is alive before)
            stale += 1
        return None

    poll(check, f"the other process sees the {change}", DEADLINE + 1)
    delay = time.monotonic() - changed_at
    # How long it took (shown with -rP); not asserted, beyond the deadline.
    print(
        f"{server.name}:{change}: seen after {delay * 1000:.1f} ms, "
        f"{stale} stale reads before"
    )
    # And from then on, never the old session again; a set is cached anew.
    for _ in range(3):
        later = read()
        assert gone(later), later
    if change == "set":
        assert later["hit"]
    if change == "regenerate":
        cookie = cookie_of(testapp)
        moved = read()
        assert (moved["new"], moved["items"]) == (False, [["a", "1"]])


# -- 3. never past expiry --------------------------------------------------------


#: A session's deadlines, each one way: (factory options, ops that store the
#: session, seconds from now within its deadline, seconds past it).
DEADLINES = {
    "idle": ({"timeout": 2, "slide_interval": 1}, "op=set:a:1", 1, 3),
    "absolute": ({"timeout": 600, "absolute_timeout": 2}, "op=set:a:1", 1, 3),
    "own_timeout": ({"timeout": 600}, "op=set:a:1&op=adjust:20", 10, 21),
}


@pytest.mark.parametrize("kind", DEADLINES)
def test_an_entry_is_not_served_past_its_deadline_by_the_clock(
    kind: str, own_server: ServerProcess, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process's clock is past the session's deadline, Redis's is not
    (nor has Redis expired anything: active expiry is off): the entry is not
    served, the session is read from Redis again, which still has it."""
    options, ops, within, past = DEADLINES[kind]
    real_time = time.time

    def clock(ahead: float) -> None:
        later = types.SimpleNamespace(
            time=lambda: real_time() + ahead,
            monotonic=time.monotonic,
            sleep=time.sleep,
        )
        monkeypatch.setattr(localcache, "time", later)

    with active_expiry_off(own_server):
        testapp = make_app(factory(own_server.url, prefix, **options))
        cache = cache_of(testapp)
        key = prefix + started(testapp, ops)
        clock(within)  # still within it: served
        before = cache.stats()
        assert cache.get(key) is not None
        grew(before, cache.stats(), hits=1)
        clock(past)
        before = cache.stats()
        assert cache.get(key) is None
        after = cache.stats()
        grew(before, after, misses=1)
        assert (after["size"], after["fresh"]) == (0, True)
        # Through the app: not a hit, a read from Redis.
        assert results(testapp.get("/do?op=get:a&op=new")) == ["1", False]
        grew(after, cache.stats(), misses=1)


@pytest.mark.parametrize("kind", ["idle", "absolute"])
def test_never_served_past_expiry_when_redis_has_not_expired_the_key(
    kind: str, own_server: ServerProcess, prefix: str
) -> None:
    """Active expiry off: the key outlives its expiry until it is touched,
    and no invalidation comes. The entry is not served past its deadline;
    the read goes to Redis, whose lazy expiry then removes the key."""
    options, ops, _, _ = DEADLINES[kind]
    admin = own_server.admin()
    with active_expiry_off(own_server):
        testapp = make_app(factory(own_server.url, prefix, **options))
        cache = cache_of(testapp)
        key = prefix + started(testapp, ops)
        pttl = admin.pttl(key)
        assert 0 < pttl <= 2000
        expired_at = time.monotonic() + pttl / 1000
        expired_keys = admin.info("stats")["expired_keys"]
        before = cache.stats()
        # The clock passes Redis's expiry (later than the cache's deadline,
        # which is counted from before the key was written); heartbeats keep
        # the cache fresh meanwhile, so nothing but the deadline stops it.
        while time.monotonic() < expired_at + 0.05:
            assert cache.sync()
            time.sleep(0.05)
        stats = cache.stats()
        grew(before, stats)
        assert (stats["size"], stats["fresh"]) == (1, True), "no message came"
        assert stats["invalidations"] == before["invalidations"]
        keyspace = admin.info("keyspace")["db0"]
        assert keyspace["keys"] == 1, "Redis has not expired it yet"
        assert results(testapp.get("/do?op=get:a&op=new")) == [None, True]
        grew(stats, cache.stats(), misses=1)
        assert admin.exists(key) == 0
        assert admin.info("stats")["expired_keys"] == expired_keys + 1


# -- 4. and 6. the connection broken ---------------------------------------------


def recover(testapp: webtest.TestApp, value: str, connects: int) -> None:
    """Read until the cache serves again: never a hit before it has
    connected again (``connects`` then), every read right."""
    cache = cache_of(testapp)

    def hit() -> bool:
        before = cache.stats()
        assert results(testapp.get("/do?op=get:a")) == [value]
        after = cache.stats()
        if after["connects"] == connects - 1:
            assert after["hits"] == before["hits"], "a hit while disconnected"
        return after["hits"] > before["hits"]

    poll(hit, "the cache serves again")
    stats = cache.stats()
    assert stats["connects"] == connects
    assert stats["fresh"] is True


def restart_from_dump(server: ServerProcess) -> None:
    """Start ``server`` again with what its last ``SAVE`` wrote (the dump
    file removed after, so that no later start loads it)."""
    try:
        server.restart()
    finally:
        (server.workdir / "dump.rdb").unlink(missing_ok=True)


def test_a_server_restart_empties_the_cache_and_it_recovers(
    own_server: ServerProcess, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localcache, "RETRY_INTERVAL", 0.05)
    testapp = make_app(factory(own_server.url, prefix))
    cache = cache_of(testapp)
    key = prefix + started(testapp)
    before = cache.stats()
    assert (before["size"], before["connects"]) == (1, 1)
    own_server.admin().save()  # the session survives the restart
    restart_from_dump(own_server)
    # The next call finds the connection closed: emptied, not served.
    assert cache.get(key) is None
    after = cache.stats()
    grew(before, after, flushes=1, bypasses=1)
    assert (after["size"], after["fresh"]) == (0, False)
    recover(testapp, "1", connects=2)


def test_a_dead_server_is_bypassed_until_it_is_back(
    own_server: ServerProcess, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localcache, "RETRY_INTERVAL", 0.05)
    testapp = make_app(factory(own_server.url, prefix))
    cache = cache_of(testapp)
    key = prefix + started(testapp)
    own_server.admin().save()
    before = cache.stats()
    own_server.kill()
    assert cache.get(key) is None  # the closed connection seen: emptied
    grew(before, cache.stats(), flushes=1, bypasses=1)
    # While it is down: bypassed, and no connection made.
    for _ in range(3):
        assert cache.get(key) is None
    after = cache.stats()
    grew(before, after, flushes=1, bypasses=4)
    assert (after["size"], after["fresh"]) == (0, False)
    restart_from_dump(own_server)
    recover(testapp, "1", connects=2)


def test_client_kill_type_pubsub_empties_the_cache_and_it_recovers(
    own_server: ServerProcess, prefix: str
) -> None:
    testapp = make_app(factory(own_server.url, prefix))
    cache = cache_of(testapp)
    key = prefix + started(testapp)
    before = cache.stats()
    assert own_server.admin().client_kill_filter(_type="pubsub") == 1

    def emptied() -> bool:
        cache.get(key)
        return cache.stats()["flushes"] > before["flushes"]

    poll(emptied, "the cache notices the killed connection")
    after = cache.stats()
    assert after["flushes"] == before["flushes"] + 1
    assert (after["size"], after["connects"]) == (0, 1)
    recover(testapp, "1", connects=2)


# -- 5. a frozen connection ------------------------------------------------------


def test_a_frozen_connection_stops_the_cache_and_thawed_it_serves_the_new_value(
    server: BaseServer, prefix: str
) -> None:
    proxy = FreezableProxy(server.host, server.port).start()
    try:
        testapp = make_app(factory(proxy.url, prefix, local_cache_max_lag=0.2))
        cache = cache_of(testapp)
        key = prefix + started(testapp)
        # Another app on the server itself, past the proxy.
        direct = make_app(factory(server.url, prefix, local_cache=0))
        direct.set_cookie("session", testapp.cookies["session"])
        proxy.freeze()
        try:
            assert results(direct.get("/do?op=set:a:2")) == [None]
            before = cache.stats()
            # The change's message waits in the proxy; so do the heartbeats.
            # The app is not used meanwhile: its own reads would hang.
            poll(lambda: cache.get(key) is None, "the cache stops serving")
            after = cache.stats()
            assert after["fresh"] is False
            assert after["bypasses"] > before["bypasses"]
            assert after["size"] == 0
        finally:
            proxy.thaw()
        assert cache.sync()
        assert cache.stats()["fresh"] is True
        assert results(testapp.get("/do?op=get:a")) == ["2"]
        assert results(testapp.get("/do?op=get:a")) == ["2"]
        assert cache.stats()["hits"] > after["hits"]
    finally:
        proxy.close()


def test_an_idle_cache_is_kept_once_a_heartbeat_is_answered(
    server: BaseServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle longer than ``local_cache_max_lag`` (no call, so no heartbeat
    sent): the next read waits briefly for a heartbeat, and the cache, known
    fresh again, is kept rather than emptied."""
    offset = [0.0]

    class Clock:
        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + offset[0]

        @staticmethod
        def time() -> float:
            return time.time()

        @staticmethod
        def sleep(seconds: float) -> None:
            time.sleep(seconds)

    monkeypatch.setattr("pyramid_redis_sessions.localcache.time", Clock)
    testapp = make_app(factory(server.url, prefix, local_cache_max_lag=0.2))
    cache = cache_of(testapp)
    key = prefix + started(testapp)
    offset[0] = 0.5  # half a second idle, by the cache's clock
    before = cache.stats()
    assert cache.get(key) is not None  # kept: a hit, no flush
    grew(before, cache.stats(), hits=1)
    assert cache.stats()["fresh"] is True
    # And again after another idle spell.
    offset[0] = 1.0
    assert cache.get(key) is not None


# -- 7. gunicorn --preload ---------------------------------------------------------


def _request(port: int, path: str, cookie: str) -> tuple[dict[str, Any], str | None]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": cookie, "Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body), response.getheader("Set-Cookie")
    finally:
        conn.close()


def test_gunicorn_preload_workers_each_keep_a_fresh_cache(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    # The session exists before gunicorn starts; its master reads it (and
    # so caches it, its tracking connection open) before it forks.
    maker = make_app(factory(server.url, prefix))
    maker.get("/do?op=set:v:old")
    cookie = cookie_of(maker)
    warm = tmp_path / "warm.json"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn",
            "--preload", "--workers", "2",
            "--bind", f"{LOOPBACK}:{port}",
            "--log-level", "warning",
            "tests.loadapp:make()",
        ],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LOAD_URL": server.url,
            "LOAD_PREFIX": prefix,
            "LOAD_WARM_COOKIE": cookie,
            "LOAD_WARM": str(warm),
        },
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, process)
        master = json.loads(warm.read_text())
        assert master["seen"] == [["old", "redis"], ["old", "local cache"]]
        assert master["stats"]["connects"] == 1
        assert master["pid"] == process.pid

        def serve_until_both_hit(value: str) -> dict[int, list[str]]:
            """Reads until each worker has served ``value`` from its cache;
            what each worker answered."""
            answers: dict[int, list[str]] = {}

            def both_hit() -> bool:
                seen, _ = _request(port, "/get", cookie)
                assert seen["v"] == value, seen  # never another value
                answers.setdefault(seen["pid"], []).append(seen["loaded_from"])
                hits = [pid for pid, a in answers.items() if "local cache" in a]
                return len(hits) == 2

            poll(both_hit, f"both workers serve {value!r} from their cache", 20)
            assert master["pid"] not in answers
            return answers

        before = serve_until_both_hit("old")
        # Each worker started afresh: its first read was a miss, though the
        # master's cache held the session when it forked.
        assert [answers[0] for answers in before.values()] == ["redis", "redis"]
        _, set_cookie = _request(port, "/set?v=new", cookie)
        assert set_cookie is None or "Max-Age=0" not in set_cookie
        after = serve_until_both_hit("new")
        assert set(before) == set(after)
    finally:
        stop_process(process)


# -- bugs found ----------------------------------------------------------------


def test_sync_in_a_forked_child_leaves_the_parents_invalidations_alone(
    server: BaseServer, prefix: str
) -> None:
    """A process that finds itself forked starts afresh, and the parent's
    socket is never read in the child (the module's promise). ``get()``
    checks the pid; ``sync()`` does not: in the child it polls the parent's
    tracking socket and takes the parent's invalidations (and heartbeat
    answers) off it, so the parent serves a changed session for as long as
    the entry lives."""
    testapp = make_app(factory(server.url, prefix))
    cache = cache_of(testapp)
    key = prefix + started(testapp)
    direct = make_app(factory(server.url, prefix, local_cache=0))
    direct.set_cookie("session", testapp.cookies["session"])
    assert results(direct.get("/do?op=set:a:2")) == [None]
    pid = os.fork()
    if pid == 0:  # the child: no pytest here, whatever happens
        code = 1
        try:
            cache.sync()
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 10
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child hung")
        time.sleep(0.01)
    assert cache.sync()
    assert results(testapp.get("/do?op=get:a")) == ["2"], "served the old value"
    assert cache.get(key) is not None  # cached anew


def test_reconnecting_gives_the_pools_connection_back(
    own_server: ServerProcess, prefix: str
) -> None:
    """The cache takes its connection from the factory's pool
    (``pool.make_connection``), which counts it against ``max_connections``,
    and never gives it back when it breaks: each reconnect uses up one more.
    With ``?max_connections=2`` (the app's connection and the cache's), the
    cache never connects again after one ``CLIENT KILL`` ("Too many
    connections"); with a larger budget, each reconnect (restart, failover,
    kill) takes one connection from the app's requests for good."""
    testapp = make_app(factory(own_server.url + "?max_connections=2", prefix))
    started(testapp)
    assert own_server.admin().client_kill_filter(_type="pubsub") == 1
    recover(testapp, "1", connects=2)
