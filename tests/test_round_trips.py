"""SPEC's round-trip table, row by row, counted on the wire.

Each request's exchanges with the server are counted client-side by
``RoundTripCounter`` (a pipeline is one round trip; redis-py's connect
handshake is not counted). Every test runs on each topology (standalone,
Sentinel, Cluster) of each backend, the app configured as a user would.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import webtest

from pyramid_redis_sessions.store import LOAD, MOVE, WRITE
from pyramid_redis_sessions.values import SLID
from tests.app import results
from tests.servers import RoundTripCounter
from tests.stored import seal, write_session
from tests.topologies import Topology

App = Callable[..., webtest.TestApp]

pytestmark = pytest.mark.topology


@pytest.fixture
def app(topology_app: App) -> App:
    """This module's app runs on every topology."""
    return topology_app


@pytest.fixture
def server(topology: Topology) -> Topology:
    """What the tests read and write behind the app's back."""
    return topology


def keys(server: Topology, prefix: str) -> list[bytes]:
    return server.keys(prefix + "*")


def start_session(testapp: webtest.TestApp, rt: RoundTripCounter) -> str:
    session_id: str = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    rt.reset()
    return session_id


def test_request_that_never_touches_the_session_costs_nothing(
    app: App, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    res = testapp.get("/untouched")
    assert round_trips.count == 0
    assert "Set-Cookie" not in res.headers


def test_read_only_anonymous_request_creates_nothing(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    res = testapp.get("/do?op=get:a&op=items&op=new")
    assert results(res) == [None, [], True]
    assert round_trips.count == 0
    assert "Set-Cookie" not in res.headers
    assert keys(server, prefix) == []


def script(round_trips: RoundTripCounter, n: int, command: int = 0) -> bytes:
    """Which of the store's scripts the ``command``-th command of round
    trip ``n`` ran (EVALSHA's first argument)."""
    sha = round_trips.requests[n][command][1].decode()
    return {LOAD.sha: b"load", WRITE.sha: b"write", MOVE.sha: b"move"}[sha]


def test_new_session_written_is_one_create(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    res = testapp.get("/do?op=set:a:1&op=set:b:2")
    assert round_trips.commands == [["EVALSHA"]]
    assert script(round_trips, 0) == b"write"
    assert round_trips.requests[0][0][4:6] == (b"create", b"1200")
    assert "session=" in res.headers["Set-Cookie"]
    assert len(keys(server, prefix)) == 1


def test_existing_session_read_is_one_hgetall_then_none_from_the_cache(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    session_id = start_session(testapp, round_trips)
    res = testapp.get("/do?op=get:a&op=items&op=get:a&op=new")
    assert results(res) == ["1", [["a", "1"]], "1", False]
    assert round_trips.commands == [["HGETALL"]]  # a miss: this process wrote it
    assert round_trips.requests[0][0] == (b"HGETALL", (prefix + session_id).encode())
    assert "Set-Cookie" not in res.headers
    round_trips.reset()
    res = testapp.get("/do?op=get:a&op=new")
    assert results(res) == ["1", False]
    # The local cache serves it; on Cluster there is none.
    assert round_trips.commands == ([["HGETALL"]] if server.kind == "cluster" else [])
    assert "Set-Cookie" not in res.headers


def test_slide_interval_0_reads_with_the_load_script(
    app: App, round_trips: RoundTripCounter
) -> None:
    testapp = app(slide_interval=0)
    start_session(testapp, round_trips)
    for _ in range(2):
        round_trips.reset()
        assert results(testapp.get("/do?op=get:a")) == ["1"]
        assert round_trips.commands == [["EVALSHA"]]
        assert script(round_trips, 0) == b"load"
        assert round_trips.requests[0][0][4:6] == (b"1200", b"")


def test_existing_session_write_is_load_plus_one_save(
    app: App, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    start_session(testapp, round_trips)
    res = testapp.get("/do?op=set:b:2&op=set:c:3&op=del:a")
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    assert script(round_trips, 1) == b"write"
    assert round_trips.requests[1][0][4] == b"update"
    assert "Set-Cookie" not in res.headers
    round_trips.reset()
    assert results(testapp.get("/do?op=items")) == [[["b", "2"], ["c", "3"]]]


def test_stale_cookie_is_two_round_trips_and_clears_the_cookie(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    start_session(testapp, round_trips)
    server.client().delete(*keys(server, prefix))
    round_trips.reset()
    res = testapp.get("/do?op=get:a&op=new")
    assert results(res) == [None, True]
    # Not found by HGETALL, so asked again by the load script, a write: a
    # read-only replica would answer READONLY rather than "no session".
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    assert script(round_trips, 1) == b"load"
    assert "Max-Age=0" in res.headers["Set-Cookie"]


def test_stale_cookie_write_starts_a_fresh_id(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    old_id = start_session(testapp, round_trips)
    server.client().delete(*keys(server, prefix))
    res = testapp.get("/do?op=set:x:1&op=id")
    assert results(res)[1] != old_id
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"], ["EVALSHA"]]
    assert round_trips.requests[2][0][4] == b"create"
    assert keys(server, prefix) == [(prefix + results(res)[1]).encode()]


def test_invalidate_then_write_is_at_most_two(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    old_id = start_session(testapp, round_trips)
    res = testapp.get("/do?op=get:a&op=invalidate&op=set:b:2&op=id&op=items")
    new_id = results(res)[3]
    assert round_trips.count <= 2
    assert round_trips.commands == [["HGETALL"], ["DEL", "EVALSHA"]]
    assert new_id != old_id
    assert keys(server, prefix) == [(prefix + new_id).encode()]
    assert results(res)[4] == [["b", "2"]]
    assert "session=" in res.headers["Set-Cookie"]
    assert "Max-Age=0" not in res.headers["Set-Cookie"]


def test_invalidate_without_reading_is_one_delete(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    start_session(testapp, round_trips)
    res = testapp.get("/do?op=invalidate")
    assert round_trips.commands == [["DEL"]]
    assert keys(server, prefix) == []
    assert "Max-Age=0" in res.headers["Set-Cookie"]


def test_regenerate_id_is_one_move_or_two_steps_on_cluster_and_keeps_data(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    """Claimed, then committed: on one server a two-key script creates the
    new key only if the old one exists, then deletes the old one; on
    Cluster (two nodes maybe) the create, then the delete."""
    testapp = app()
    old_id = start_session(testapp, round_trips)
    res = testapp.get("/do?op=regenerate&op=id")
    new_id = results(res)[1]
    if server.kind == "cluster":
        assert round_trips.commands == [["HGETALL"], ["EVALSHA"], ["DEL"]]
        assert script(round_trips, 1) == b"write"
        assert round_trips.requests[1][0][4] == b"create"
        assert round_trips.requests[2][0][1] == (prefix + old_id).encode()
    else:
        assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
        assert script(round_trips, 1) == b"move"
        assert round_trips.requests[1][0][2:5] == (
            b"2",
            (prefix + old_id).encode(),
            (prefix + new_id).encode(),
        )
    assert new_id != old_id
    assert keys(server, prefix) == [(prefix + new_id).encode()]
    round_trips.reset()
    assert results(testapp.get("/do?op=items&op=id")) == [[["a", "1"]], new_id]


def test_regenerate_id_of_a_bound_session_moves_its_index_entry_with_it(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    """On one server the move script updates the index itself; on Cluster
    the new id is listed with the create, and the old one unlisted once its
    key is deleted (one round trip more)."""
    testapp = app(user_key="uid")
    results(testapp.get("/do?op=set:uid:ann&op=id"))
    round_trips.reset()
    new_id = results(testapp.get("/do?op=regenerate&op=id"))[1]
    if server.kind == "cluster":
        assert round_trips.commands == [
            ["HGETALL"],
            ["EVALSHA", "EVALSHA"],
            ["DEL"],
            ["EVALSHA"],
        ]
    else:
        assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
        assert script(round_trips, 1) == b"move"
    (index,) = keys(server, prefix + "user:")
    assert server.client().zrange(index, 0, -1) == [new_id.encode()]


def test_regenerate_on_a_new_session_is_one_set(
    app: App, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    res = testapp.get("/do?op=set:a:1&op=id&op=regenerate&op=id")
    first, second = results(res)[1], results(res)[3]
    assert first != second
    assert round_trips.commands == [["EVALSHA"]]
    assert results(testapp.get("/do?op=id")) == [second]


def test_nested_change_is_saved_without_changed(
    app: App, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    testapp.get("/do?op=list:cart&op=append:cart:apple")
    round_trips.reset()
    testapp.get("/do?op=append:cart:pear")
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    assert results(testapp.get("/do?op=get:cart")) == [["apple", "pear"]]


def _pickle_in_another_process(code: str, seed: int) -> bytes:
    code = f"import pickle, sys; sys.stdout.buffer.write(pickle.dumps({code}, 5))"
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True
    )
    return done.stdout


def test_unchanged_session_with_a_set_is_not_rewritten(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    """A set pickles in hash order, which differs between processes: a
    session another worker wrote must not count as changed here."""
    testapp = app()
    session_id = start_session(testapp, round_trips)
    code = "{f'm{i}' for i in range(40)}"
    written = next(
        p
        for p in (_pickle_in_another_process(code, seed) for seed in (1, 2, 3))
        if pickle.dumps(pickle.loads(p), protocol=5) != p
    )
    write_session(server, prefix, session_id, {b"tags": written})
    round_trips.reset()
    assert results(testapp.get("/do?op=len:tags")) == [40]
    assert round_trips.commands == [["HGETALL"]]


def test_non_default_timeout_costs_nothing_more_when_read(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    session_id = start_session(testapp, round_trips)
    testapp.get("/do?op=adjust:60")
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    assert 0 < server.client().ttl(prefix + session_id) <= 60
    round_trips.reset()
    assert results(testapp.get("/do?op=timeout")) == [60]
    assert round_trips.commands == [["HGETALL"]]  # the save just slid it
    # Once a tenth of its own timeout has passed since: the read slides it,
    # in one more round trip (the write script, setting SLID and the expiry).
    key = prefix + session_id
    old = b"%.6f" % (time.time() - 7)
    server.client().hset(key, SLID, seal(session_id, SLID, old))
    server.client().expire(key, 5)
    round_trips.reset()
    assert results(testapp.get("/do?op=timeout")) == [60]
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    assert script(round_trips, 1) == b"write"
    assert 55 < server.client().ttl(key) <= 60


def test_absolute_deadline_costs_nothing_more_when_read(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app(absolute_timeout=100)
    start_session(testapp, round_trips)
    (key,) = keys(server, prefix)
    assert 95 < server.client().ttl(key) <= 100
    assert results(testapp.get("/do?op=get:a")) == ["1"]
    assert round_trips.commands == [["HGETALL"]]
    assert 95 < server.client().ttl(key) <= 100


def test_saving_one_small_change_of_a_100_kb_session_sends_under_2_kb(
    app: App, server: Topology, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    session_id = start_session(testapp, round_trips)
    big = {f"k{i:02d}".encode(): b"x" * 2000 for i in range(50)}  # 100 KB
    write_session(server, prefix, session_id, big)
    round_trips.reset()
    testapp.get("/do?op=incr:n")
    _load, save = round_trips.requests
    sent = sum(len(arg) for command in save for arg in command)
    assert sent < 2000
    assert server.client().memory_usage(prefix + session_id, samples=0) > 100_000
