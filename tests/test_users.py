"""A user's sessions: the index, listing, ending, pruning, on real servers.

Each test runs on Redis and on Valkey (the ``server`` fixture); the Cluster
tests at the end run on a three-node cluster of each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import redis
import webtest
from pyramid.testing import DummyRequest

from pyramid_redis_sessions import RedisSessionFactory, session_factory_from_settings
from pyramid_redis_sessions.store import INDEX
from pyramid_redis_sessions.users import SessionInfo, UserSessions, index_key
from pyramid_redis_sessions.values import USER, FieldCodec
from tests.app import SECRET, factory, make_app, results
from tests.servers import BaseServer, RoundTripCounter
from tests.stored import backdate
from tests.topologies import ClusterTopology

App = Callable[..., webtest.TestApp]


def do(browser: webtest.TestApp, *ops: str) -> list[Any]:
    query = "&".join(f"op={quote(op)}" for op in ops)
    return results(browser.get(f"/do?{query}"))


def listing(browser: webtest.TestApp, user: str) -> list[dict[str, Any]]:
    """``user``'s sessions, listed from ``browser``'s request."""
    sessions: list[dict[str, Any]] = do(browser, f"sessions:{user}")[0]
    return sessions


def browser_of(testapp: webtest.TestApp) -> webtest.TestApp:
    """Another browser (cookie jar) on the same application."""
    return webtest.TestApp(testapp.app)


def login(testapp: webtest.TestApp, user: str) -> tuple[webtest.TestApp, str]:
    """A new browser logged in as ``user``, and its session id."""
    browser = browser_of(testapp)
    session_id: str = do(browser, "regenerate", f"set:uid:{user}", "id")[2]
    return browser, session_id


def members(server: BaseServer, prefix: str, user: str) -> dict[str, float]:
    raw = server.client().zrange(index_key(prefix, user), 0, -1, withscores=True)
    return {m.decode(): score for m, score in raw}


def backdate_score(
    server: BaseServer, prefix: str, user: str, session_id: str, seconds: float = 10
) -> None:
    """Make the index believe the session expired ``seconds`` ago."""
    key = index_key(prefix, user)
    server.client().zadd(key, {session_id: time.time() - seconds})


@pytest.fixture
def users(app: App) -> webtest.TestApp:
    """The test app with ``user_key='uid'``."""
    return app(user_key="uid")


# -- listing -------------------------------------------------------------------


def test_list_shows_exactly_the_users_sessions_and_marks_the_current(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    alice = [login(users, "alice") for _ in range(3)]
    bob = [login(users, "bob") for _ in range(2)]
    listed = listing(alice[0][0], "alice")
    assert len(listed) == 3
    assert [s["current"] for s in listed] == [True, False, False]
    assert len({s["handle"] for s in listed}) == 3
    assert len(listing(bob[1][0], "bob")) == 2
    assert set(members(server, prefix, "alice")) == {i for _, i in alice}
    # Handles never carry the id: it is a bearer credential.
    for s in listed:
        assert all(i not in s["handle"] and s["handle"] not in i for _, i in alice)


def test_listing_tells_created_last_active_expires_and_details(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app()  # no user_key: the app binds explicitly
    browser = browser_of(testapp)
    before = time.time()
    session_id = do(browser, "set:a:1", "bind:ann:Firefox", "adjust:900", "id")[3]
    backdate(server, prefix, session_id, 3600)  # created an hour ago,
    server.client().expire(prefix + session_id, 600)  # 300 s idle of 900
    (info,) = listing(browser, "ann")
    now = time.time()
    assert before - 3600 <= info["created"] <= now - 3600
    assert now + 590 < info["expires"] <= now + 600
    assert now - 310 < info["last_active"] <= now - 299
    assert info["details"] == {"ua": "Firefox"}
    assert info["current"] is True


def test_handles_are_stable_and_a_script_with_only_the_settings_sees_them(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser, _ = login(users, "alice")
    handle = do(browser, "handle")[0]
    f = session_factory_from_settings(
        {
            "redis.sessions.secret": SECRET,
            "redis.sessions.url": server.url,
            "redis.sessions.prefix": prefix,
            "redis.sessions.user_key": "uid",
        }
    )
    sessions = UserSessions(f)
    (info,) = sessions.list("alice")
    assert isinstance(info, SessionInfo)
    assert info.handle == handle
    assert info.current is False
    assert sessions.current_handle is None
    assert sessions.end("alice", handle) is True
    assert do(browser, "new", "get:uid") == [True, None]


def test_user_ids_with_braces_get_one_hash_tag_and_stay_out_of_key_names(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    user = "ann{x}@example.org"
    browser = browser_of(users)
    do(browser, "bind:" + user)
    (key,) = [k.decode() for k in server.client().keys(prefix + "user:*")]
    assert key == index_key(prefix, user)
    assert "ann" not in key and "example" not in key
    assert key.count("{") == key.count("}") == 1
    assert len(listing(browser, user)) == 1


# -- ending --------------------------------------------------------------------


def test_ending_one_by_handle_makes_that_browser_anonymous(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    (a1, _), (a2, id2), (a3, _) = (login(users, "alice") for _ in range(3))
    handle = do(a2, "handle")[0]
    assert do(a1, f"end:alice:{handle}") == [True]
    assert do(a2, "new", "get:uid") == [True, None]
    assert do(a3, "new", "get:uid") == [False, "alice"]
    assert do(a1, "new", "get:uid") == [False, "alice"]
    assert id2 not in members(server, prefix, "alice")
    assert len(listing(a1, "alice")) == 2
    assert do(a1, f"end:alice:{handle}") == [False]  # already gone


def test_a_handle_of_another_users_session_ends_nothing(
    users: webtest.TestApp,
) -> None:
    a1, _ = login(users, "alice")
    b1, _ = login(users, "bob")
    bobs = do(b1, "handle")[0]
    assert do(a1, f"end:alice:{bobs}") == [False]
    assert do(a1, "endothers:alice") == [0]
    assert do(b1, "new", "get:uid") == [False, "bob"]


def test_a_session_with_a_forged_user_field_is_not_listed(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    """Whoever can write to Redis, without the secret, cannot make a session
    show up (or be ended) as another user's."""
    _, session_id = login(users, "mallory")
    key = prefix + session_id
    value = server.client().hget(key, USER)
    server.client().hset(key, USER, value[:1] + bytes(16) + b"alice")
    server.client().zadd(index_key(prefix, "alice"), {session_id: time.time() - 1})
    a1, _ = login(users, "alice")
    assert len(listing(a1, "alice")) == 1
    assert session_id not in members(server, prefix, "alice")
    assert do(a1, "endothers:alice") == [0]
    assert server.client().exists(key)


def assert_hidden_then_pruned(
    browser: webtest.TestApp, server: BaseServer, prefix: str, user: str, entry: str
) -> None:
    """``entry`` of ``user``'s index is never listed (only ``browser``'s own
    session is), and is pruned once its score has passed."""
    assert len(listing(browser, user)) == 1
    backdate_score(server, prefix, user, entry)
    assert len(listing(browser, user)) == 1
    assert entry not in members(server, prefix, user)


def test_a_session_listed_under_another_user_is_not_shown(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    _, bob_id = login(users, "bob")
    server.client().zadd(index_key(prefix, "alice"), {bob_id: time.time() + 999})
    a1, _ = login(users, "alice")
    assert bob_id in members(server, prefix, "alice")  # left until its score
    assert_hidden_then_pruned(a1, server, prefix, "alice", bob_id)


def test_the_end_script_spares_a_session_bound_to_someone_else(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    """Even if alice's index lists bob's session (a stale entry), ending
    "alice's sessions" does not end it: the script checks the session's
    signed user field."""
    b1, bob_id = login(users, "bob")
    server.client().zadd(index_key(prefix, "alice"), {bob_id: time.time() + 999})
    a1, _ = login(users, "alice")
    assert do(a1, "endall:alice") == [1]  # alice's own, not bob's
    assert do(b1, "new", "get:uid") == [False, "bob"]
    assert do(a1, "new") == [True]


def test_end_all_but_the_current_one_leaves_one(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    sessions = [login(users, "alice") for _ in range(3)]
    b1, _ = login(users, "bob")
    (a1, id1), others = sessions[0], sessions[1:]
    assert do(a1, "endothers:alice") == [2]
    assert [s["current"] for s in listing(a1, "alice")] == [True]
    assert list(members(server, prefix, "alice")) == [id1]
    for browser, _ in others:
        assert do(browser, "new") == [True]
    assert do(b1, "new") == [False]


def test_end_all_ends_the_current_one_too_and_the_index_goes(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    a1, _ = login(users, "alice")
    a2, _ = login(users, "alice")
    assert do(a1, "endall:alice") == [2]
    assert do(a1, "new") == [True]
    assert do(a2, "new") == [True]
    assert not server.client().exists(index_key(prefix, "alice"))


def test_sessions_sealed_under_a_fallback_secret_can_be_ended(
    server: BaseServer, prefix: str
) -> None:
    browser = make_app(factory(server.url, prefix, user_key="uid"))
    do(browser, "set:uid:alice", "bind:alice:Firefox")
    session_id = do(browser, "id")[0]
    rotated = RedisSessionFactory(
        "a-new-secret", url=server.url, prefix=prefix, secret_fallbacks=[SECRET]
    )
    sessions = UserSessions(rotated)
    assert [s.current for s in sessions.list("alice")] == [False]
    # A write re-signs every field under the new secret, the binding too.
    after = make_app(rotated)
    after.cookiejar = browser.cookiejar
    do(after, "set:a:1")
    stored = server.client().hgetall(prefix + session_id)
    assert FieldCodec("a-new-secret").for_session(session_id).open(
        USER, stored[USER]
    ) == (b"alice", True)
    assert sessions.list("alice")[0].details == {"ua": "Firefox"}
    assert sessions.end_all("alice") == 1


# -- keeping the index true ----------------------------------------------------


def test_regenerate_id_replaces_the_old_id_in_the_index(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser, old_id = login(users, "alice")
    new_id = do(browser, "regenerate", "id")[1]
    assert new_id != old_id
    assert list(members(server, prefix, "alice")) == [new_id]
    assert [s["current"] for s in listing(browser, "alice")] == [True]


def test_invalidate_removes_the_entry(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser, _ = login(users, "alice")
    do(browser, "get:uid", "invalidate")
    assert not server.client().exists(index_key(prefix, "alice"))


def test_invalidate_then_login_as_another_user_moves_the_entry(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser, old_id = login(users, "alice")
    new_id = do(browser, "get:uid", "invalidate", "set:uid:bob", "id")[3]
    assert members(server, prefix, "alice") == {}
    assert list(members(server, prefix, "bob")) == [new_id]
    assert new_id != old_id


def test_invalidate_without_reading_leaves_the_list_true(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    """Unread, the session's binding is unknown: its entry stays until its
    score passes, is never listed, and is pruned then."""
    browser, session_id = login(users, "alice")
    do(browser, "invalidate")
    other, _ = login(users, "alice")
    assert_hidden_then_pruned(other, server, prefix, "alice", session_id)


def test_rebinding_to_another_user_moves_the_entry(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser, session_id = login(users, "alice")
    do(browser, "set:uid:bob")
    assert members(server, prefix, "alice") == {}
    assert list(members(server, prefix, "bob")) == [session_id]
    assert [s["current"] for s in listing(browser, "bob")] == [True]


def test_deleting_the_user_key_unbinds(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser, session_id = login(users, "alice")
    assert do(browser, "del:uid", "bound") == [None, None]
    assert members(server, prefix, "alice") == {}
    assert USER not in server.client().hgetall(prefix + session_id)


def test_bind_user_with_and_without_user_key(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app()
    browser = browser_of(testapp)
    do(browser, "set:a:1", "bind:ann:Safari")
    assert do(browser, "bound") == ["ann"]
    assert do(browser, "bind:ann:Chrome", "sessions:ann")[1][0]["details"] == {
        "ua": "Safari"  # listed before this request's save
    }
    assert listing(browser, "ann")[0]["details"] == {"ua": "Chrome"}
    do(browser, "unbind")
    assert do(browser, "bound", "sessions:ann") == [None, []]
    assert not server.client().exists(index_key(prefix, "ann"))


def test_bind_user_checks_its_arguments(server: BaseServer, prefix: str) -> None:
    session = factory(server.url, prefix)(DummyRequest())
    with pytest.raises(TypeError, match="user must be a str"):
        session.bind_user(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="map str to str"):
        session.bind_user("ann", details={"n": 1})  # type: ignore[dict-item]


def test_without_a_request_a_client_callable_factory_is_refused(
    server: BaseServer, prefix: str
) -> None:
    f = factory(server.url, prefix, client_callable=lambda request, **kw: None)
    with pytest.raises(ValueError, match="client_callable"):
        UserSessions(f)


def test_user_sessions_use_the_requests_store_and_know_the_current_one(
    server: BaseServer, prefix: str
) -> None:
    # With client_callable, the request's client serves the listing too:
    # the callable is asked once per request, as for the session itself.
    calls: list[Any] = []

    def client_callable(request: Any, **options: Any) -> Any:
        calls.append(request)
        return redis.Redis.from_url(server.url)

    app = make_app(factory(server.url, prefix, client_callable=client_callable))
    app.get("/do?op=bind:ann")
    calls.clear()
    handle, listed = results(app.get("/do?op=handle&op=sessions:ann"))
    assert len(calls) == 1
    assert [entry["current"] for entry in listed] == [True]
    assert listed[0]["handle"] == handle


# -- pruning -------------------------------------------------------------------


def test_expired_sessions_vanish_from_the_list_and_the_index_key(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    (a1, id1), (_, id2), (_, id3) = (login(users, "alice") for _ in range(3))
    for session_id in (id2, id3):  # as if they had expired a while ago
        server.client().delete(prefix + session_id)
        backdate_score(server, prefix, "alice", session_id)
    assert [s["current"] for s in listing(a1, "alice")] == [True]
    assert list(members(server, prefix, "alice")) == [id1]
    server.client().delete(prefix + id1)
    backdate_score(server, prefix, "alice", id1)
    assert listing(a1, "alice") == []
    assert not server.client().exists(index_key(prefix, "alice"))


def test_a_login_prunes_expired_entries(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    _, old = login(users, "alice")
    server.client().delete(prefix + old)
    backdate_score(server, prefix, "alice", old)
    _, new = login(users, "alice")
    assert list(members(server, prefix, "alice")) == [new]


def test_a_session_used_past_its_score_is_never_pruned(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    """Reads slide the TTL without touching the index: a score in the past
    does not mean the session is gone. Pruning by score alone would drop it
    here, and "log out everywhere" would then miss it."""
    a1, id1 = login(users, "alice")
    backdate_score(server, prefix, "alice", id1, seconds=60)
    a2, _ = login(users, "alice")  # a binding save: looks at the suspect
    assert members(server, prefix, "alice")[id1] > time.time() + 1000
    backdate_score(server, prefix, "alice", id1, seconds=60)
    assert len(listing(a2, "alice")) == 2
    assert members(server, prefix, "alice")[id1] > time.time() + 1000
    assert do(a2, "endothers:alice") == [1]
    assert do(a1, "new") == [True]


def test_with_absolute_timeout_scores_are_deadlines_and_the_key_expires(
    app: App, server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app(user_key="uid", absolute_timeout=3600)
    _, old = login(testapp, "alice")
    score = members(server, prefix, "alice")[old]
    assert time.time() + 3590 < score <= time.time() + 3600
    assert 3590 < server.client().ttl(index_key(prefix, "alice")) <= 3602
    # A dead entry past its deadline goes by score, within the login's own
    # round trip: no session needs looking at.
    server.client().delete(prefix + old)
    backdate_score(server, prefix, "alice", old)
    browser = browser_of(testapp)
    do(browser, "get:x")
    round_trips.reset()
    new = do(browser, "set:uid:alice", "id")[1]
    assert round_trips.commands == [["EVALSHA", "EVALSHA"]]
    assert list(members(server, prefix, "alice")) == [new]


def test_without_absolute_timeout_the_index_key_has_no_ttl(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    """Its members' expiries slide with use, so no TTL could be trusted to
    outlive them: the key goes when its last entry is pruned."""
    login(users, "alice")
    assert server.client().ttl(index_key(prefix, "alice")) == -1


def test_the_index_script_prunes_by_score_only_with_deadlines(
    server: BaseServer, prefix: str
) -> None:
    client = server.client()
    key = index_key(prefix, "x")
    now = time.time()
    client.zadd(key, {"old": now - 5, "live": now + 100})
    assert INDEX([key], [repr(now), "", 0], client) == [b"old"]
    assert client.zcard(key) == 2
    assert INDEX([key], [repr(now), "1", 0], client) == []
    assert client.zrange(key, 0, -1) == [b"live"]
    assert 99 <= client.ttl(key) <= 102


# -- round trips ---------------------------------------------------------------


def test_a_binding_save_after_a_script_flush_loads_the_scripts(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    browser = browser_of(users)
    do(browser, "set:a:1")
    server.admin().script_flush()
    do(browser, "set:uid:alice")
    assert len(members(server, prefix, "alice")) == 1
    assert listing(browser, "alice")[0]["current"]


def test_a_corrupt_index_key_is_an_error_of_this_package(
    users: webtest.TestApp, server: BaseServer, prefix: str
) -> None:
    server.client().set(index_key(prefix, "alice"), "not a sorted set")
    with pytest.raises(ValueError):
        do(browser_of(users), "set:uid:alice")


def test_feature_off_costs_and_writes_nothing_more(
    app: App, server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = app()
    testapp.get("/do?op=regenerate&op=set:uid:alice&op=set:a:1")
    assert round_trips.commands == [["EVALSHA"]]
    round_trips.reset()
    testapp.get("/do?op=set:uid:bob")
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    round_trips.reset()
    testapp.get("/do?op=get:uid&op=invalidate&op=set:b:2")
    assert round_trips.commands == [["HGETALL"], ["DEL", "EVALSHA"]]
    assert server.client().keys(prefix + "user:*") == []


def test_ordinary_reads_and_writes_of_a_bound_session_cost_the_same(
    users: webtest.TestApp, round_trips: RoundTripCounter
) -> None:
    browser, _ = login(users, "alice")
    round_trips.reset()
    assert do(browser, "get:uid", "get:a") == ["alice", None]
    assert round_trips.commands == [["HGETALL"]]
    round_trips.reset()
    # Served from the local cache: the write is the save alone.
    do(browser, "set:a:1", "set:uid:alice", "flash:hi")
    assert round_trips.commands == [["EVALSHA"]]
    round_trips.reset()
    do(browser, "bind:alice")  # the same user again: nothing to change
    assert round_trips.commands == [["HGETALL"]]


def test_binding_saves_update_the_index_in_the_same_round_trip(
    users: webtest.TestApp, round_trips: RoundTripCounter
) -> None:
    browser = browser_of(users)
    do(browser, "set:uid:alice")  # a new session, bound
    assert round_trips.commands == [["EVALSHA", "EVALSHA"]]
    round_trips.reset()
    do(browser, "set:uid:bob")  # rebind: out of alice's, into bob's
    assert round_trips.commands == [["HGETALL"], ["EVALSHA", "EVALSHA", "EVALSHA"]]
    round_trips.reset()
    do(browser, "regenerate")  # the move script updates the index itself
    assert round_trips.commands == [["HGETALL"], ["EVALSHA"]]
    round_trips.reset()
    do(browser, "get:uid", "invalidate")
    assert round_trips.commands == [["HGETALL"], ["DEL", "EVALSHA"]]


def test_listing_and_ending_cost_a_constant_number_of_round_trips(
    users: webtest.TestApp, round_trips: RoundTripCounter
) -> None:
    sessions = [login(users, "alice") for _ in range(6)]
    a1 = sessions[0][0]
    do(a1, "get:uid")
    round_trips.reset()
    assert len(listing(a1, "alice")) == 6
    assert round_trips.commands == [["ZRANGE"], ["PTTL", "HMGET"] * 6]
    round_trips.reset()
    assert do(a1, "endothers:alice") == [5]
    assert round_trips.commands == [["ZRANGE"], ["EVALSHA"] * 6]


# -- Cluster -------------------------------------------------------------------


@pytest.mark.topology
def test_the_index_works_on_cluster(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    f = factory(cluster_topology.url, prefix, cluster=True, user_key="uid")
    testapp = make_app(f)
    sessions = [login(testapp, "alice") for _ in range(8)]
    bob, _ = login(testapp, "bob")
    a1 = sessions[0][0]
    listed = listing(a1, "alice")
    assert len(listed) == 8 and listed[0]["current"]
    held = {
        node.port: {k.decode() for k in node.admin().keys(prefix + "*")}
        for node in cluster_topology.nodes
    }
    ids = {prefix + i for _, i in sessions}
    # The sessions are spread over the nodes; the index is one key on one.
    assert sum(bool(ids & keys) for keys in held.values()) > 1
    key = index_key(prefix, "alice")
    (owner,) = [n for n in cluster_topology.nodes if key in held[n.port]]
    assert owner.admin().zcard(key) == 8
    assert do(a1, f"end:alice:{listed[1]['handle']}") == [True]
    assert do(sessions[1][0], "new") == [True]
    new_id = do(sessions[2][0], "regenerate", "id")[1]
    assert new_id in {m.decode() for m in owner.admin().zrange(key, 0, -1)}
    assert do(a1, "endothers:alice") == [6]
    assert [s["current"] for s in listing(a1, "alice")] == [True]
    assert do(bob, "new", "get:uid") == [False, "bob"]
    do(bob, "set:uid:alice")  # rebind across slots
    assert len(listing(a1, "alice")) == 2
    assert listing(bob, "bob") == []
