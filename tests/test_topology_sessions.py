"""Sessions through the app on every topology (standalone, Sentinel, Cluster;
Redis and Valkey), and what only Sentinel, Cluster and TLS can show: a
failover, sessions spread over three masters, a ``rediss://`` round trip.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import webtest
from pyramid.interfaces import ISessionFactory
from redis.cluster import RedisCluster

from pyramid_redis_sessions.client import worst_case_seconds
from pyramid_redis_sessions.sentinel import FOLLOW_INTERVAL
from pyramid_redis_sessions.store import SCRIPTS
from pyramid_redis_sessions.views import RETRY_AFTER
from tests.app import make_included_app, results
from tests.servers import RoundTripCounter
from tests.topologies import (
    ClusterTopology,
    SentinelTopology,
    TLSServerProcess,
    Topology,
    wait_until,
)

pytestmark = pytest.mark.topology

App = Callable[..., webtest.TestApp]

#: SPEC: a request that needs an unreachable store fails in under 10 s.
SPEC_BOUND = 10.0


# -- the same behaviour on every topology --------------------------------------


def test_values_flash_and_csrf_survive_the_round_trip(topology_app: App) -> None:
    testapp = topology_app()
    first = results(testapp.get("/do?op=setint:n:5&op=list:l&op=flash:hi&op=csrf"))
    token = first[3]
    testapp.get("/do?op=append:l:x&op=incr:n")
    assert results(testapp.get("/do?op=items&op=csrf&op=pop_flash")) == [
        [["_csrft_", token], ["l", ["x"]], ["n", 6]],
        token,
        ["hi"],
    ]


def test_regenerate_id_moves_the_data_to_a_new_key(
    topology_app: App, topology: Topology, prefix: str
) -> None:
    testapp = topology_app()
    old = results(testapp.get("/do?op=set:a:1&op=flash:f&op=id"))[2]
    new = results(testapp.get("/do?op=regenerate&op=id"))[1]
    assert new != old
    assert topology.keys(prefix + "*") == [(prefix + new).encode()]
    assert results(testapp.get("/do?op=get:a&op=pop_flash")) == ["1", ["f"]]


def test_invalidate_then_write_starts_a_fresh_session(
    topology_app: App, topology: Topology, prefix: str
) -> None:
    testapp = topology_app()
    old = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    res = testapp.get("/do?op=invalidate&op=set:b:2&op=id")
    new = results(res)[2]
    assert new != old
    assert topology.keys(prefix + "*") == [(prefix + new).encode()]
    assert results(testapp.get("/do?op=items")) == [[["b", "2"]]]


def test_a_late_write_does_not_resurrect_a_session_ended_meanwhile(
    topology_app: App, topology: Topology, prefix: str
) -> None:
    testapp = topology_app()
    testapp.get("/do?op=set:a:1")
    (key,) = topology.keys(prefix + "*")
    topology.client().delete(key)  # another request ended it
    res = testapp.get("/do?op=get:a&op=set:b:2")
    assert results(res)[0] is None
    # A fresh id, never the old one (no fixation).
    assert key not in topology.keys(prefix + "*")


def test_everything_works_after_every_node_forgot_the_scripts(
    topology_app: App, topology: Topology, round_trips: RoundTripCounter
) -> None:
    """A restarted node (or SCRIPT FLUSH): redis-py loads the script again;
    on Cluster on every master, and also when the create went in a pipeline."""
    testapp = topology_app()
    testapp.get("/do?op=set:a:1")
    for ops in ("get:a", "set:a:2", "regenerate", "invalidate&op=set:b:3"):
        for node in topology.masters():
            node.admin().script_flush()
        testapp.get(f"/do?op={ops}")
    assert results(testapp.get("/do?op=items")) == [[["b", "3"]]]
    assert any("SCRIPT" in names for names in round_trips.commands)


# -- Cluster -------------------------------------------------------------------


def _cluster_app(
    cluster: ClusterTopology, prefix: str, round_trips: RoundTripCounter
) -> webtest.TestApp:
    testapp = make_included_app(
        {
            "redis.sessions.url": cluster.url,
            "redis.sessions.cluster": "true",
            "redis.sessions.prefix": prefix,
        }
    )
    client = testapp.app.registry.queryUtility(ISessionFactory).store.client
    assert isinstance(client, RedisCluster)
    round_trips.instrument(client)
    return testapp


def _load_scripts(cluster: ClusterTopology) -> None:
    for node in cluster.nodes:
        for script in SCRIPTS:
            node.admin().script_load(script.script)


def test_cluster_1000_sessions_land_on_all_three_masters_at_one_round_trip_each(
    cluster_topology: ClusterTopology, prefix: str, round_trips: RoundTripCounter
) -> None:
    cluster_topology.heal()
    _load_scripts(cluster_topology)
    testapp = _cluster_app(cluster_topology, prefix, round_trips)
    per_request: Counter[int] = Counter()
    for i in range(1000):
        testapp.reset()  # a new visitor, no cookie
        round_trips.reset()
        testapp.get(f"/do?op=set:n:{i}")
        per_request[round_trips.count] += 1
    assert per_request == {1: 1000}  # SPEC: a new session written is 1
    counts = {
        node.port: len(node.admin().keys(prefix + "*"))
        for node in cluster_topology.nodes
    }
    assert sum(counts.values()) == 1000
    assert all(n >= 200 for n in counts.values()), counts
    # The last visitor's session reads back at one round trip.
    round_trips.reset()
    assert results(testapp.get("/do?op=get:n")) == ["999"]
    assert round_trips.count == 1


def test_cluster_regenerate_across_two_nodes_creates_then_deletes(
    cluster_topology: ClusterTopology, prefix: str, round_trips: RoundTripCounter
) -> None:
    """The new key is created on its node, then the old key deleted on its
    own: two round trips after the load, the old key kept until the new
    one exists."""
    cluster_topology.heal()
    _load_scripts(cluster_topology)
    testapp = _cluster_app(cluster_topology, prefix, round_trips)
    client = RedisCluster.from_url(cluster_topology.url)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    for _ in range(20):
        round_trips.reset()
        new = results(testapp.get("/do?op=regenerate&op=id"))[1]
        assert round_trips.count == 3
        old_node = client.get_node_from_key(prefix + session_id).name
        new_node = client.get_node_from_key(prefix + new).name
        if old_node != new_node:
            assert round_trips.commands == [["HGETALL"], ["EVALSHA"], ["DEL"]]
            assert round_trips.exchanges == [1, 1, 1]
            break
        session_id = new
    else:
        pytest.fail("20 new ids all landed on the node of the old one")
    assert client.exists(prefix + session_id) == 0
    assert results(testapp.get("/do?op=get:a")) == ["1"]


def test_cluster_node_killed_fails_only_the_sessions_it_holds(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    cluster_topology.heal()
    settings = {
        "redis.sessions.url": cluster_topology.url,
        "redis.sessions.cluster": "true",
        "redis.sessions.prefix": prefix,
    }
    victim = cluster_topology.nodes[2]
    address = f"{victim.host}:{victim.port}"
    client = RedisCluster.from_url(cluster_topology.url)
    on_victim: list[webtest.TestApp] = []
    elsewhere: list[webtest.TestApp] = []
    while len(on_victim) < 2 or len(elsewhere) < 2:
        user = make_included_app(settings)
        session_id = results(user.get("/do?op=set:a:1&op=id"))[1]
        node = client.get_node_from_key(prefix + session_id).name
        (on_victim if node == address else elsewhere).append(user)
    victim.kill()
    try:
        for user in on_victim:
            started = time.monotonic()
            res = user.get("/do?op=get:a", status=503)
            assert time.monotonic() - started < SPEC_BOUND
            assert "Set-Cookie" not in res.headers
        for user in elsewhere:
            assert results(user.get("/do?op=get:a")) == ["1"]
    finally:
        victim.restart()
        cluster_topology.heal()


def test_a_cluster_that_is_down_is_a_503_that_keeps_the_cookie(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    """Once the other masters see one fail, the whole Cluster answers
    CLUSTERDOWN (full slot coverage is required by default): every session
    request gets the 503, nobody is logged out, and service resumes."""
    cluster_topology.heal()
    settings = {
        "redis.sessions.url": cluster_topology.url,
        "redis.sessions.cluster": "true",
        "redis.sessions.prefix": prefix,
    }
    victim, survivor = cluster_topology.nodes[2], cluster_topology.nodes[0]
    address = f"{victim.host}:{victim.port}"
    client = RedisCluster.from_url(cluster_topology.url)
    while True:  # a session on a node that stays up
        user = make_included_app(settings)
        session_id = results(user.get("/do?op=set:a:1&op=id"))[1]
        if client.get_node_from_key(prefix + session_id).name != address:
            break
    victim.kill()
    try:
        deadline = time.monotonic() + 15
        while b"cluster_state:fail" not in survivor.admin().execute_command(
            "CLUSTER", "INFO"
        ):
            assert time.monotonic() < deadline, "the cluster never saw the failure"
            time.sleep(0.05)
        started = time.monotonic()
        res = user.get("/do?op=get:a", status=503)
        assert time.monotonic() - started < SPEC_BOUND
        assert "Set-Cookie" not in res.headers
    finally:
        victim.restart()
        cluster_topology.heal()
    assert results(user.get("/do?op=get:a")) == ["1"]


# -- Sentinel failover -----------------------------------------------------------


def test_sentinel_failover_keeps_sessions_and_never_answers_500(
    sentinel_topology: SentinelTopology, prefix: str
) -> None:
    topology = sentinel_topology
    topology.heal()
    testapp_settings = {
        "redis.sessions.sentinels": " ".join(
            f"{h}:{p}" for h, p in topology.sentinel_addresses
        ),
        "redis.sessions.sentinel_service": topology.service,
        "redis.sessions.prefix": prefix,
    }
    users = [make_included_app(testapp_settings) for _ in range(10)]
    ids = [results(u.get(f"/do?op=setint:n:{i}&op=id"))[1] for i, u in enumerate(users)]
    old = topology.current_master()
    # Replication is asynchronous: wait until the replica has every write,
    # or the failover may lose the last ones (documented in docs/redis.rst).
    topology.wait_replicated()
    bound = worst_case_seconds()
    old.kill()
    try:
        # Requests fired during the failover: served, or a 503; never a
        # 500, never past the bound, never a cleared cookie.
        during: Counter[int] = Counter()
        deadline = time.monotonic() + 30
        promoted = False
        while not promoted and time.monotonic() < deadline:
            started = time.monotonic()
            res = users[0].get("/do?op=get:n", expect_errors=True)
            assert time.monotonic() - started < SPEC_BOUND
            assert res.status_int in (200, 503), res.status
            if res.status_int == 503:
                assert res.headers["Retry-After"] == str(RETRY_AFTER)
            assert "Set-Cookie" not in res.headers
            during[res.status_int] += 1
            with contextlib.suppress(RuntimeError):
                promoted = topology.current_master() is not old
        assert promoted, "no replica was promoted"
        topology.wait_for_new_master(old.port)
        # Each process follows within FOLLOW_INTERVAL of the sentinels.
        time.sleep(FOLLOW_INTERVAL)
        # The same cookies read their data on the new master, and new
        # writes succeed within the retry budget.
        for i, (user, session_id) in enumerate(zip(users, ids, strict=True)):
            started = time.monotonic()
            res = user.get("/do?op=incr:n&op=id")
            assert time.monotonic() - started < bound
            assert results(res) == [i + 1, session_id]
            assert "Set-Cookie" not in res.headers
    finally:
        old.restart()  # the sentinels make it a replica of the new master
    new = topology.current_master()
    assert new.admin().exists(*(prefix + session_id for session_id in ids)) == 10


# -- TLS -------------------------------------------------------------------------


def test_session_round_trip_over_tls_with_the_generated_ca(
    tls_server: TLSServerProcess, prefix: str
) -> None:
    certificates = tls_server.certificates
    settings: dict[str, Any] = {
        "redis.sessions.url": f"rediss://{tls_server.host}:{tls_server.port}/0",
        "redis.sessions.ssl_ca_certs": str(certificates.ca),
        "redis.sessions.ssl_cert_reqs": "required",
        "redis.sessions.prefix": prefix,
    }
    testapp = make_included_app(settings)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    testapp.get("/do?op=regenerate&op=set:b:2")
    assert results(testapp.get("/do?op=items")) == [[["a", "1"], ["b", "2"]]]
    stored = tls_server.admin().keys(prefix + "*")
    assert len(stored) == 1 and stored[0] != (prefix + session_id).encode()
    # The wrong CA: the request fails with the 503, the cookie kept.
    wrong = make_included_app(
        {**settings, "redis.sessions.ssl_ca_certs": str(certificates.other_ca)}
    )
    wrong.set_cookie("session", testapp.cookies["session"])
    res = wrong.get("/do?op=get:a", status=503)
    assert "Set-Cookie" not in res.headers


def test_the_local_cache_over_tls_serves_and_hears_another_clients_change(
    tls_server: TLSServerProcess, prefix: str
) -> None:
    # The cache asks its TLS socket whether anything arrived without a
    # recv (pyramid_redis_sessions.readable): nothing may stay unread
    # inside the TLS layer.
    certificates = tls_server.certificates
    testapp = make_included_app(
        {
            "redis.sessions.url": f"rediss://{tls_server.host}:{tls_server.port}/0",
            "redis.sessions.ssl_ca_certs": str(certificates.ca),
            "redis.sessions.ssl_cert_reqs": "required",
            "redis.sessions.prefix": prefix,
        }
    )
    cache = testapp.app.registry.queryUtility(ISessionFactory).store.cache
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    testapp.get("/do?op=get:a")
    before = cache.stats()
    for _ in range(3):
        assert results(testapp.get("/do?op=get:a")) == ["1"]
    assert cache.stats()["hits"] == before["hits"] + 3
    tls_server.admin().hset(prefix + session_id, "a", b"forged")
    assert cache.sync()
    # The entry is gone; Redis's copy no longer verifies: a new session.
    assert results(testapp.get("/do?op=get:a&op=new")) == [None, True]
    assert cache.stats()["invalidations"] > before["invalidations"]


def _role(node: Any) -> str:
    role = node.admin().execute_command("ROLE")[0]
    return role.decode() if isinstance(role, bytes) else str(role)


def test_sentinel_failover_under_load_loses_no_write_made_a_second_after_it(
    sentinel_topology: SentinelTopology, prefix: str
) -> None:
    """``SENTINEL FAILOVER`` (a graceful switch: the old master stays up and
    takes writes until the sentinels demote it, seconds later, and then
    drops them as it resyncs). Writes must follow the new master within
    about a second of the promotion: no write acknowledged later than that
    is lost, and no flash message popped comes back."""
    topology = sentinel_topology
    topology.heal()
    old = topology.current_master()
    new = next(node for node in topology.nodes if node is not old)
    for node in topology.nodes:
        for script in SCRIPTS:
            node.admin().script_load(script.script)
    settings = {
        "redis.sessions.sentinels": " ".join(
            f"{h}:{p}" for h, p in topology.sentinel_addresses
        ),
        "redis.sessions.sentinel_service": topology.service,
        "redis.sessions.prefix": prefix,
    }
    wsgi = make_included_app(settings).app
    users = [webtest.TestApp(wsgi) for _ in range(4)]
    for user in users:
        user.get("/do?op=list:l")
    topology.wait_replicated()
    stop = threading.Event()
    acked: list[tuple[float, str]] = []  # (when, token) of appends answered 200
    popped: list[str] = []
    statuses: Counter[int] = Counter()
    promoted: list[float] = []
    announced: list[float] = []  # when the first sentinel named the new master

    def load(number: int, user: webtest.TestApp) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            token = f"u{number}-{i}"
            ops = f"op=append:l:{token}" + (f"&op=flash:{token}" if i % 3 == 1 else "")
            if i % 3 == 2:
                ops += "&op=pop_flash"
            res = user.get(f"/do?{ops}", expect_errors=True)
            statuses[res.status_int] += 1
            if res.status_int == 200:
                acked.append((time.monotonic(), token))
                if i % 3 == 2:
                    popped.extend(results(res)[-1])

    def watch() -> None:
        while not stop.is_set() and not announced:
            with contextlib.suppress(Exception):
                if not promoted and _role(new) == "master":
                    promoted.append(time.monotonic())
                if topology.master_address()[1] == new.port:
                    announced.append(time.monotonic())
            time.sleep(0.005)

    threads = [threading.Thread(target=load, args=(n, u)) for n, u in enumerate(users)]
    threads.append(threading.Thread(target=watch))
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        topology.sentinels[0].admin().execute_command(
            "SENTINEL", "FAILOVER", topology.service
        )
        deadline = time.monotonic() + 20
        while not promoted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert promoted, "the replica was never promoted"
        time.sleep(3.0)  # writes go on well past the switch
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    # Until the old master is demoted and resynced, it still holds what it
    # took: read the outcome only from the new master afterwards.
    wait_until = time.monotonic() + 30
    while _role(old) != "slave":
        assert time.monotonic() < wait_until, "the old master was never demoted"
        time.sleep(0.1)
    topology.wait_ready(timeout=30)
    assert statuses.keys() <= {200, 503}, statuses
    reader = make_included_app(settings)
    kept: set[str] = set()
    for user in users:
        reader.set_cookie("session", user.cookies["session"])
        items, flashes = results(reader.get("/do?op=get:l&op=pop_flash"))
        kept.update(items)
        assert not set(flashes) & set(popped), "a popped flash message came back"
    late = [
        (round(when - promoted[0], 3), token)
        for when, token in acked
        if token not in kept and when > promoted[0] + 1.0
    ]
    assert not late, (
        f"{len(late)} writes acknowledged over 1 s after the promotion lost, "
        f"the last {late[-1][0]} s after it; the sentinels named the new "
        f"master {round(announced[0] - promoted[0], 3)} s after it"
    )
    assert any(when > promoted[0] + 1.0 for when, _ in acked)  # the load went on


# -- everything hung: the documented bound holds --------------------------------

#: Short timeouts keep these tests fast; the bound is the formula's.
FAST = {"socket_timeout": 0.3, "socket_connect_timeout": 0.2, "retries": 2}
#: Room for a loaded two-core machine on top of the formula.
MARGIN = 1.5


def _fails_within(testapp: webtest.TestApp, query: str, bound: float) -> None:
    started = time.monotonic()
    res = testapp.get(f"/do?{query}", status=503)
    elapsed = time.monotonic() - started
    assert elapsed < bound + MARGIN, (elapsed, bound)
    assert res.headers["Retry-After"] == str(RETRY_AFTER)
    assert "Set-Cookie" not in res.headers


def test_sentinel_master_and_every_sentinel_hung_is_a_503_within_the_bound(
    own_sentinel_topology: SentinelTopology, prefix: str
) -> None:
    topology = own_sentinel_topology
    settings = {
        "redis.sessions.sentinels": " ".join(
            f"{h}:{p}" for h, p in topology.sentinel_addresses
        ),
        "redis.sessions.sentinel_service": topology.service,
        "redis.sessions.prefix": prefix,
        **{f"redis.sessions.{name}": value for name, value in FAST.items()},
    }
    known = make_included_app(settings)
    known.get("/do?op=set:a:1")  # this process has found the master
    fresh = make_included_app(settings)  # and this one not yet
    fresh.set_cookie("session", known.cookies["session"])
    bound = worst_case_seconds(
        FAST["retries"],
        FAST["socket_timeout"],
        FAST["socket_connect_timeout"],
        "sentinel",
    )
    hung = [topology.current_master(), *topology.sentinels]
    # One request per freeze: a sentinel frozen for 2 s goes into TILT mode
    # (no failover for 30 s) when it wakes.
    for testapp, query in (
        (known, "op=get:a"),
        (known, "op=set:b:2"),
        (fresh, "op=get:a"),
    ):
        for node in hung:
            node.stop()
        try:
            time.sleep(FOLLOW_INTERVAL)  # the last answer is old: a lookup is due
            _fails_within(testapp, query, bound)
        finally:
            for node in hung:
                node.cont()
    # Back: the next request works, without restarting the app (the
    # sentinels, in TILT mode for a while, still name the master).
    wait_until(
        lambda: known.get("/do?op=get:a", expect_errors=True).status_int == 200,
        "a request to work again after the freeze",
        45.0,
    )
    assert results(known.get("/do?op=get:a")) == ["1"]


def test_cluster_every_node_hung_is_a_503_within_the_bound(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    cluster_topology.heal()
    settings = {
        "redis.sessions.url": cluster_topology.url,
        "redis.sessions.cluster": "true",
        "redis.sessions.prefix": prefix,
        **{f"redis.sessions.{name}": value for name, value in FAST.items()},
    }
    testapp = make_included_app(settings)
    testapp.get("/do?op=set:a:1")
    bound = worst_case_seconds(
        FAST["retries"],
        FAST["socket_timeout"],
        FAST["socket_connect_timeout"],
        "cluster",
    )
    for node in cluster_topology.nodes:
        node.stop()
    try:
        _fails_within(testapp, "op=get:a", bound)
        _fails_within(testapp, "op=set:b:2", bound)
    finally:
        for node in cluster_topology.nodes:
            node.cont()
    cluster_topology.wait_ready()
    assert results(testapp.get("/do?op=get:a")) == ["1"]


def test_sentinel_forked_worker_finds_the_master_itself(
    sentinel_topology: SentinelTopology, prefix: str
) -> None:
    """gunicorn --preload: the parent used the client (its lookups ran in
    threads, its connections are open); a forked worker uses none of that
    and follows the master on its own."""
    import multiprocessing

    from pyramid_redis_sessions import RedisSessionFactory
    from tests.app import SECRET
    from tests.test_scale import _client_session, _in_child

    topology = sentinel_topology
    topology.heal()
    made = RedisSessionFactory(
        SECRET,
        prefix=prefix,
        sentinels=[f"{h}:{p}" for h, p in topology.sentinel_addresses],
        sentinel_service=topology.service,
    )
    _client_session(made, 2)
    time.sleep(0.3)
    _client_session(made, 2)  # a lookup is under way, or has just been made
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_in_child, args=(made, child_end))
    child.start()
    assert parent_end.poll(30), "the forked worker did not answer"
    assert parent_end.recv() == [None, "1", "2"]
    child.join(30)
    assert child.exitcode == 0
    assert _client_session(made, 2) == [None, "1"]


def test_sentinel_master_switch_empties_the_local_cache(
    own_sentinel_topology: SentinelTopology, prefix: str
) -> None:
    """A graceful failover (``SENTINEL FAILOVER``): the old master lives on
    as a replica, so the cache's connection to it need not break; the
    cache sees the sentinels name another master, empties itself and
    connects to the new one. A change made on the new master is then read,
    never the entry kept from the old one."""
    topology = own_sentinel_topology
    testapp = make_included_app(
        {
            "redis.sessions.sentinels": " ".join(
                f"{h}:{p}" for h, p in topology.sentinel_addresses
            ),
            "redis.sessions.sentinel_service": topology.service,
            "redis.sessions.prefix": prefix,
        }
    )
    factory = testapp.app.registry.queryUtility(ISessionFactory)
    cache = factory.store.cache
    assert cache is not None
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    results(testapp.get("/do?op=get:a"))  # a miss, then kept
    hits = cache.stats()["hits"]
    assert results(testapp.get("/do?op=get:a")) == ["1"]
    assert cache.stats()["hits"] == hits + 1
    connects, flushes = cache.stats()["connects"], cache.stats()["flushes"]
    old = topology.current_master()
    topology.wait_replicated()
    sentinel = topology.sentinels[0]
    sentinel.admin().execute_command("SENTINEL", "FAILOVER", topology.service)
    new = topology.wait_for_new_master(old.port)
    # The change the cached entry must not hide, made on the new master.
    key = prefix + session_id
    wait_until(lambda: _role(new) == "master", "the new master to take writes")
    new.admin().hset(key, "a", new.admin().hget(key, "a") or b"")
    new.admin().hdel(key, "a")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        res = testapp.get("/do?op=get:a", expect_errors=True)
        if res.status_int == 200 and results(res) == [None]:
            break
        assert res.status_int in (200, 503)
        time.sleep(0.05)
    else:
        pytest.fail("the change on the new master was never read")
    assert cache.stats()["flushes"] > flushes
    # Connected again (at most once a second), to the new master: hits again.
    testapp.get("/do?op=set:a:2")
    wait_until(
        lambda: (
            results(testapp.get("/do?op=get:a")) == ["2"]
            and cache.stats()["connects"] > connects
        ),
        "the cache to connect again",
        5,
    )
    hits = cache.stats()["hits"]
    assert results(testapp.get("/do?op=get:a")) == ["2"]
    assert results(testapp.get("/do?op=get:a")) == ["2"]
    assert cache.stats()["hits"] > hits
