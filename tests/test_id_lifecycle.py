"""Id changes are claimed, then committed: a logout always sticks, and a
transient error never logs anyone out.

A late ``regenerate_id()`` (a slow login) must not bring back a session that
a logout, ``end_all()``, expiry or another login ended while it ran, and a
move whose new key cannot be created (Redis out of memory, the new id's
Cluster node hung) keeps the old session. The races are forced: request A
runs in a thread through a view that loads the session, then waits on an
event; B runs to completion; then A goes on. Everything goes through the
real app on real servers (each topology where it matters).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from pyramid.response import Response
from redis.cluster import RedisCluster

from pyramid_redis_sessions.events import SessionIdRegenerated
from pyramid_redis_sessions.store import SCRIPTS, RedisStore
from pyramid_redis_sessions.views import RETRY_AFTER
from tests.app import _run, make_included_app, results
from tests.servers import BaseServer, ServerProcess
from tests.test_concurrency import browser_tab
from tests.test_migration import (
    LEGACY_COOKIE,
    LEGACY_KEY,
    legacy_header,
    one_x_envelope,
    store_legacy,
)
from tests.topologies import ClusterTopology, Topology

#: Short timeouts for the fault tests: a hung node fails fast.
FAST = {"socket_timeout": "0.3", "socket_connect_timeout": "0.3", "retries": "0"}


class Pause:
    """``/slow?op=...&then=...``: runs the ``op``s (the load), tells the test
    (``loaded``), waits until the test says ``go``, then runs the ``then``s
    (the late part: a login's ``regenerate_id()``)."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.go = threading.Event()
        self.regenerated: list[SessionIdRegenerated] = []

    def view(self, request: Request) -> Response:
        first = [_run(request.session, op) for op in request.GET.getall("op")]
        self.loaded.set()
        assert self.go.wait(30)
        then = [_run(request.session, op) for op in request.GET.getall("then")]
        return Response(json=[first, then])

    def add_to(self, config: Configurator) -> None:
        config.add_route("slow", "/slow")
        config.add_view(self.view, route_name="slow")
        config.add_subscriber(self.regenerated.append, SessionIdRegenerated)

    def run(
        self,
        tab: webtest.TestApp,
        url: str,
        meanwhile: Callable[[], Any],
        **kwargs: Any,
    ) -> webtest.TestResponse:
        """A's request through ``url`` in a thread, ``meanwhile`` run while
        it waits between its load and its late part; A's response."""
        out: dict[str, Any] = {}

        def request_a() -> None:
            try:
                out["response"] = tab.get(url, status="*", **kwargs)
            except BaseException as e:  # reported below, failing the test
                out["error"] = e

        thread = threading.Thread(target=request_a)
        thread.start()
        try:
            assert self.loaded.wait(30), "request A never loaded its session"
            meanwhile()
        finally:
            self.go.set()
            thread.join(60)
        assert not thread.is_alive()
        assert "error" not in out, out.get("error")
        response: webtest.TestResponse = out["response"]
        return response


def make(
    options: dict[str, Any], prefix: str, pause: Pause, **settings: Any
) -> webtest.TestApp:
    """The test app as users configure it (the 503 view included), with the
    slow view."""
    given = {**options, "prefix": prefix, **settings}
    return make_included_app(
        {f"redis.sessions.{k}": v for k, v in given.items()}, pause.add_to
    )


def session_keys(topology: Topology | BaseServer, prefix: str) -> list[bytes]:
    """The session keys under ``prefix`` (not the user indexes)."""
    if isinstance(topology, Topology):
        found = topology.keys(prefix + "*")
    else:
        found = topology.client().keys(prefix + "*")
    return [k for k in found if not k.startswith(f"{prefix}user:".encode())]


def cookie_set(res: webtest.TestResponse) -> str:
    """The session cookie's value that ``res`` sets."""
    name, _, value = res.headers["Set-Cookie"].split(";")[0].partition("=")
    assert name == "session"
    return value


def login(testapp: webtest.TestApp, *ops: str) -> tuple[str, str]:
    """A logged-in session: its id and cookie."""
    query = "&".join(f"op={op}" for op in ("set:user:ann", *ops, "id"))
    session_id: str = results(testapp.get(f"/do?{query}"))[-1]
    cookie: str = testapp.cookies["session"]
    return session_id, cookie


SLOW_LOGIN = "/slow?op=get:user&then=set:role:admin&then=regenerate"


@pytest.fixture
def pause() -> Pause:
    return Pause()


def _assert_late_response_changed_nothing(
    res: webtest.TestResponse, pause: Pause
) -> None:
    assert res.status_int == 200
    assert results(res)[0] == ["ann"]  # A had loaded the session
    assert "Set-Cookie" not in res.headers, "the late login set a cookie"
    assert pause.regenerated == [], "the late login was announced"


# -- a late regenerate_id() finds its session ended -----------------------------


@pytest.mark.topology
def test_late_regenerate_after_a_logout_stays_logged_out(
    topology: Topology, prefix: str, pause: Pause
) -> None:
    testapp = make(topology.options, prefix, pause, user_key="user")
    _, cookie = login(testapp)

    def logout() -> None:
        res = browser_tab(testapp, cookie).get("/do?op=get:user&op=invalidate")
        assert "Max-Age=0" in res.headers["Set-Cookie"]

    res = pause.run(browser_tab(testapp, cookie), SLOW_LOGIN, logout)
    _assert_late_response_changed_nothing(res, pause)
    assert session_keys(topology, prefix) == []
    # Nor is the new id left in the user's index (on Cluster it was listed
    # before the old key was found gone).
    assert topology.keys(prefix + "user:*") == []
    # The browser, whatever cookie it keeps, is logged out.
    assert results(browser_tab(testapp, cookie).get("/do?op=get:user")) == [None]


@pytest.mark.topology
def test_late_regenerate_after_end_all_stays_logged_out(
    topology: Topology, prefix: str, pause: Pause
) -> None:
    testapp = make(topology.options, prefix, pause, user_key="user")
    _, cookie = login(testapp)
    admin = webtest.TestApp(testapp.app)  # another browser: "log out everywhere"

    def end_all() -> None:
        assert results(admin.get("/do?op=endall:ann")) == [1]

    res = pause.run(browser_tab(testapp, cookie), SLOW_LOGIN, end_all)
    _assert_late_response_changed_nothing(res, pause)
    assert session_keys(topology, prefix) == []
    assert results(admin.get("/do?op=sessions:ann")) == [[]]
    assert topology.keys(prefix + "user:*") == []


@pytest.mark.topology
@pytest.mark.parametrize("how", ["deleted", "expired"])
def test_late_regenerate_after_expiry_starts_nothing(
    topology: Topology, prefix: str, pause: Pause, how: str
) -> None:
    testapp = make(topology.options, prefix, pause)
    session_id, cookie = login(testapp)
    client = topology.client()

    def expire() -> None:
        key = prefix + session_id
        if how == "deleted":
            assert client.delete(key) == 1
            return
        assert client.pexpire(key, 1)
        deadline = time.monotonic() + 5
        while client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not client.exists(key)

    res = pause.run(browser_tab(testapp, cookie), SLOW_LOGIN, expire)
    _assert_late_response_changed_nothing(res, pause)
    assert session_keys(topology, prefix) == []


@pytest.mark.topology
def test_late_regenerate_after_another_login_keeps_that_login(
    topology: Topology, prefix: str, pause: Pause
) -> None:
    testapp = make(topology.options, prefix, pause)
    old_id, cookie = login(testapp, "set:visits:1")
    other: dict[str, str] = {}

    def other_login() -> None:
        tab = browser_tab(testapp, cookie)
        res = tab.get("/do?op=set:user:bob&op=regenerate&op=id")
        other["id"] = results(res)[2]
        other["cookie"] = tab.cookies["session"]

    res = pause.run(browser_tab(testapp, cookie), SLOW_LOGIN, other_login)
    assert res.status_int == 200
    assert "Set-Cookie" not in res.headers, "A's response must not undo B's cookie"
    assert len(pause.regenerated) == 1  # B's, not A's
    assert session_keys(topology, prefix) == [(prefix + other["id"]).encode()]
    after = browser_tab(testapp, other["cookie"])
    got = results(after.get("/do?op=get:user&op=get:visits&op=get:role&op=id"))
    assert got == ["bob", "1", None, other["id"]]
    assert other["id"] != old_id


def test_late_move_of_a_legacy_session_that_ended_meanwhile_creates_nothing(
    server: BaseServer, pause: Pause
) -> None:
    """A 1.x session is moved to the new format on its first response; if
    its key went meanwhile, nothing is created and no cookie set."""
    store_legacy(server, LEGACY_KEY, one_x_envelope({"user": "ann"}), 600)
    testapp = make({"url": server.url}, "", pause)

    def logout_by_the_old_app() -> None:
        assert server.client().delete(LEGACY_KEY) == 1

    res = pause.run(
        webtest.TestApp(testapp.app),
        "/slow?op=get:user",
        logout_by_the_old_app,
        headers=legacy_header(LEGACY_COOKIE),
    )
    assert results(res) == [["ann"], []]
    assert "Set-Cookie" not in res.headers
    assert server.client().keys("*") == []


# -- end_all() and a move that commits between its two steps -----------------


def test_end_all_that_read_the_index_before_a_move_ends_the_moved_session(
    server: BaseServer, prefix: str, pause: Pause, monkeypatch: pytest.MonkeyPatch
) -> None:
    """end_all() reads the index, a login moves the session to a new id,
    then end_all() ends the old id, which is gone: it reads the index again
    and ends the new one."""
    testapp = make({"url": server.url}, prefix, pause, user_key="user")
    _, cookie = login(testapp)
    store = testapp.app.registry.queryUtility(ISessionFactory).store
    read = store.index_members
    moved = threading.Event()

    def read_then_let_the_login_commit(key: str) -> Any:
        members = read(key)
        if not moved.is_set():
            moved.set()
            pause.go.set()  # A's regenerate_id() commits now
            thread.join(30)
        return members

    monkeypatch.setattr(store, "index_members", read_then_let_the_login_commit)
    out: dict[str, Any] = {}

    def request_a() -> None:
        out["res"] = browser_tab(testapp, cookie).get(SLOW_LOGIN)

    thread = threading.Thread(target=request_a)
    thread.start()
    assert pause.loaded.wait(30)
    admin = webtest.TestApp(testapp.app)
    assert results(admin.get("/do?op=endall:ann")) == [1]
    thread.join(30)
    new_cookie = cookie_set(out["res"])  # the login committed
    assert new_cookie != cookie
    assert session_keys(server, prefix) == []  # and was ended all the same
    assert results(browser_tab(testapp, new_cookie).get("/do?op=get:user")) == [None]


# -- the new key cannot be created: the old session is kept, 503 --------------


@pytest.fixture
def out_of_memory(server: BaseServer) -> Iterator[Callable[[], None]]:
    """``fill()``: the server refuses writes that need memory (``maxmemory``
    1 byte, ``noeviction``), until the test ends."""
    if not isinstance(server, ServerProcess):
        pytest.skip("reconfigures a server this suite started")
    admin = server.admin()
    before = admin.config_get("maxmemory-policy")["maxmemory-policy"]

    def fill() -> None:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)

    try:
        yield fill
    finally:
        admin.config_set("maxmemory", 0)
        admin.config_set("maxmemory-policy", before)


def test_regenerate_when_redis_is_out_of_memory_keeps_the_session_and_is_a_503(
    server: BaseServer, prefix: str, pause: Pause, out_of_memory: Callable[[], None]
) -> None:
    testapp = make({"url": server.url}, prefix, pause)
    session_id, cookie = login(testapp, "list:cart", "append:cart:book")
    out_of_memory()
    res = browser_tab(testapp, cookie).get(
        "/do?op=get:user&op=set:role:admin&op=regenerate", status=503
    )
    assert res.headers["Retry-After"] == str(RETRY_AFTER)
    assert "Set-Cookie" not in res.headers
    assert session_keys(server, prefix) == [(prefix + session_id).encode()]
    server.admin().config_set("maxmemory", 0)
    got = results(browser_tab(testapp, cookie).get("/do?op=get:user&op=get:cart&op=id"))
    assert got == ["ann", ["book"], session_id]


def test_legacy_move_when_redis_is_out_of_memory_keeps_the_old_key(
    server: BaseServer, pause: Pause, out_of_memory: Callable[[], None]
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"user": "ann"}), 600)
    testapp = make({"url": server.url}, "", pause)
    out_of_memory()
    res = testapp.get(
        "/do?op=get:user", headers=legacy_header(LEGACY_COOKIE), status=503
    )
    assert "Set-Cookie" not in res.headers
    assert server.client().keys("*") == [LEGACY_KEY.encode()]
    server.admin().config_set("maxmemory", 0)
    res = testapp.get("/do?op=get:user", headers=legacy_header(LEGACY_COOKIE))
    assert results(res) == ["ann"]
    assert "session=" in res.headers["Set-Cookie"]  # moved now
    assert LEGACY_KEY.encode() not in server.client().keys("*")


def test_invalidate_then_write_ends_the_old_session_even_when_out_of_memory(
    server: BaseServer, prefix: str, pause: Pause, out_of_memory: Callable[[], None]
) -> None:
    """No claim: the user asked for the old session to end."""
    testapp = make({"url": server.url}, prefix, pause)
    _, cookie = login(testapp)
    out_of_memory()
    tab = browser_tab(testapp, cookie)
    tab.get("/do?op=get:user&op=invalidate&op=flash:bye", status=503)
    assert session_keys(server, prefix) == []


# -- Cluster: the two keys on two nodes ------------------------------------------


def _node_of(cluster: ClusterTopology, key: str) -> ServerProcess:
    client = RedisCluster.from_url(cluster.url)
    try:
        port = int(client.get_node_from_key(key).port)
    finally:
        client.close()
    return next(node for node in cluster.nodes if node.port == port)


def _ids_on_two_nodes(
    cluster: ClusterTopology, prefix: str, more: int = 0
) -> list[str]:
    """Ids whose keys live on two different nodes: the first on one, the
    second (and ``more`` others) on another."""

    def an_id_on(wanted: Callable[[ServerProcess], bool]) -> str:
        while True:
            session_id = secrets.token_urlsafe(32)
            if wanted(_node_of(cluster, prefix + session_id)):
                return session_id

    first = an_id_on(lambda node: True)
    old_node = _node_of(cluster, prefix + first)
    second = an_id_on(lambda node: node is not old_node)
    new_node = _node_of(cluster, prefix + second)
    return [first, second, *(an_id_on(lambda n: n is new_node) for _ in range(more))]


@pytest.fixture
def cluster(cluster_topology: ClusterTopology) -> Iterator[ClusterTopology]:
    cluster_topology.heal()
    Topology("cluster", "", cluster_topology).load_scripts(SCRIPTS)
    yield cluster_topology
    cluster_topology.heal()


def _cluster_app(
    cluster: ClusterTopology, prefix: str, pause: Pause, ids: list[str]
) -> webtest.TestApp:
    queue = list(ids)
    options = {"url": cluster.url, "cluster": True, **FAST}
    return make(options, prefix, pause, id_generator=lambda: queue.pop(0))


@pytest.mark.topology
def test_cluster_regenerate_to_a_hung_node_keeps_the_session_and_is_a_503(
    cluster: ClusterTopology, prefix: str, pause: Pause
) -> None:
    old_id, warm_id, new_id = _ids_on_two_nodes(cluster, prefix, more=1)
    testapp = _cluster_app(cluster, prefix, pause, [old_id, warm_id, new_id])
    assert login(testapp, "list:cart", "append:cart:book")[0] == old_id
    cookie = testapp.cookies["session"]
    # Another visitor's session, on the node about to hang: the app holds a
    # connection there, so the create is written and waits for its answer.
    assert login(webtest.TestApp(testapp.app))[0] == warm_id
    hung = _node_of(cluster, prefix + new_id)
    hung.stop()
    try:
        started = time.monotonic()
        tab = browser_tab(testapp, cookie)
        res = tab.get("/do?op=get:user&op=regenerate", status=503)
        assert time.monotonic() - started < 10  # the documented bound
    finally:
        hung.cont()
    assert res.headers["Retry-After"] == str(RETRY_AFTER)
    assert "Set-Cookie" not in res.headers
    old_node = _node_of(cluster, prefix + old_id)
    assert old_node.admin().exists(prefix + old_id) == 1
    got = results(browser_tab(testapp, cookie).get("/do?op=get:user&op=get:cart&op=id"))
    assert got == ["ann", ["book"], old_id]


@pytest.mark.topology
def test_cluster_regenerate_whose_old_key_cannot_be_deleted_keeps_the_old_session(
    cluster: ClusterTopology, prefix: str, pause: Pause, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new key is created, then the old key's node holds writes
    (``CLIENT PAUSE``) so that the ``DEL`` times out: the new key is deleted
    again, the old session stays the user's, 503."""
    old_id, new_id = _ids_on_two_nodes(cluster, prefix)
    testapp = _cluster_app(cluster, prefix, pause, [old_id, new_id])
    _, cookie = login(testapp)
    old_node = _node_of(cluster, prefix + old_id)
    client = testapp.app.registry.queryUtility(ISessionFactory).store.client
    delete = client.delete
    admin = old_node.admin()

    def pause_then_delete(*keys: str) -> Any:
        admin.client_pause(5000, all=False)  # writes only
        return delete(*keys)

    monkeypatch.setattr(client, "delete", pause_then_delete)
    try:
        tab = browser_tab(testapp, cookie)
        res = tab.get("/do?op=get:user&op=regenerate", status=503)
    finally:
        admin.client_unpause()
    monkeypatch.undo()
    assert "Set-Cookie" not in res.headers
    assert _node_of(cluster, prefix + new_id).admin().exists(prefix + new_id) == 0
    assert admin.exists(prefix + old_id) == 1
    got = results(browser_tab(testapp, cookie).get("/do?op=get:user&op=id"))
    assert got == ["ann", old_id]


@pytest.mark.topology
def test_cluster_late_regenerate_after_a_logout_deletes_its_new_key(
    cluster: ClusterTopology, prefix: str, pause: Pause
) -> None:
    """On Cluster the new key is created before the old one is found gone:
    it is deleted again, and the response sets no cookie."""
    old_id, new_id = _ids_on_two_nodes(cluster, prefix)
    testapp = _cluster_app(cluster, prefix, pause, [old_id, new_id, "unused"])
    _, cookie = login(testapp)

    def logout() -> None:
        browser_tab(testapp, cookie).get("/do?op=invalidate")

    res = pause.run(browser_tab(testapp, cookie), SLOW_LOGIN, logout)
    _assert_late_response_changed_nothing(res, pause)
    topology = Topology("cluster", "", cluster)
    assert session_keys(topology, prefix) == []


# -- the store's move, on its own ------------------------------------------------


def test_a_move_retried_after_its_reply_was_lost_is_not_taken_for_ended(
    server: BaseServer, prefix: str
) -> None:
    """redis-py sends a command again after a timeout; the move script then
    finds the old key gone but the new one holding its own creation field."""
    from pyramid_redis_sessions.store import GONE, MOVED

    store = RedisStore(server.client(), prefix)
    assert store.create("old", [b"\xffcreated", b"sealed-old"], 60)
    fields = [b"\xffcreated", b"sealed-for-new", b"a", b"1"]
    assert store.move(prefix + "old", "new", fields, 60) == MOVED
    assert store.move(prefix + "old", "new", fields, 60) == MOVED
    other = [b"\xffcreated", b"sealed-for-another", b"a", b"1"]
    assert store.move(prefix + "old", "new", other, 60) == GONE
    assert server.client().keys(prefix + "*") == [(prefix + "new").encode()]
    assert server.client().hgetall(prefix + "new") == {
        b"\xffcreated": b"sealed-for-new",
        b"a": b"1",
    }


@pytest.mark.topology
def test_a_move_to_an_id_in_use_tries_another(
    topology: Topology, prefix: str, pause: Pause
) -> None:
    """A custom id_generator that repeats: the move is refused without a
    change and made again under the next id."""
    ids = ["one-" + secrets.token_urlsafe(8), "two-" + secrets.token_urlsafe(8)]
    queue = [ids[0], ids[1], ids[1], "three"]
    testapp = make(topology.options, prefix, pause, id_generator=lambda: queue.pop(0))
    _, cookie = login(testapp)
    other = webtest.TestApp(testapp.app)
    assert results(other.get("/do?op=set:user:bob&op=id")) == [None, ids[1]]
    res = browser_tab(testapp, cookie).get("/do?op=regenerate")
    moved = browser_tab(testapp, cookie_set(res))
    assert results(moved.get("/do?op=get:user&op=id")) == ["ann", "three"]
    expected = sorted((prefix + i).encode() for i in (ids[1], "three"))
    assert session_keys(topology, prefix) == expected
    assert results(other.get("/do?op=get:user")) == ["bob"]


def test_a_move_after_a_script_flush_loads_the_script(
    server: BaseServer, prefix: str, pause: Pause
) -> None:
    testapp = make({"url": server.url}, prefix, pause)
    _, cookie = login(testapp)
    server.admin().script_flush()
    res = browser_tab(testapp, cookie).get("/do?op=get:user&op=regenerate")
    assert results(browser_tab(testapp, cookie_set(res)).get("/do?op=get:user")) == [
        "ann"
    ]
    assert len(session_keys(server, prefix)) == 1


def test_a_move_that_fails_on_a_corrupt_index_changes_no_session(
    server: BaseServer, prefix: str, pause: Pause
) -> None:
    """A script is not rolled back: the move updates the index before it
    touches the sessions, so an index key of another type fails it first."""
    from pyramid_redis_sessions.users import index_key

    testapp = make({"url": server.url}, prefix, pause, user_key="user")
    session_id, cookie = login(testapp)
    server.client().set(index_key(prefix, "ann"), "not a sorted set")
    with pytest.raises(ValueError):
        browser_tab(testapp, cookie).get("/do?op=get:user&op=regenerate")
    assert session_keys(server, prefix) == [(prefix + session_id).encode()]
    server.client().delete(index_key(prefix, "ann"))
    got = results(browser_tab(testapp, cookie).get("/do?op=get:user&op=id"))
    assert got == ["ann", session_id]
