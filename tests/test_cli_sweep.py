"""``psessions sweep``: the entries of ended sessions leave the user-sessions
indexes, and no live session's entry ever does, against real servers the
suite started.

An entry is made a suspect by lowering its score with a direct ``ZADD`` on
the test's own server (as if its session had been read, not saved, since),
and a session is ended by deleting its key: nothing sleeps.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import webtest
from redis.cluster import RedisCluster

from pyramid_redis_sessions import SessionFactory
from pyramid_redis_sessions.admin import Keyspace
from pyramid_redis_sessions.cli.sweep import SweepCommand
from pyramid_redis_sessions.store import SCRIPTS
from pyramid_redis_sessions.users import UserSessions, index_key
from tests import test_cli
from tests.app import SECRET, factory, make_app, results
from tests.servers import BaseServer
from tests.test_cli import Result, Wire, fill, log_in, run, write_ini
from tests.test_cli_end import HANDSHAKE, Terminal, default_server_bootstrap
from tests.topologies import ClusterTopology

# The fixtures of test_cli, for these tests too.
cluster, ini, wire = test_cli.cluster, test_cli.ini, test_cli.wire


def bound(f: SessionFactory, user: str) -> tuple[webtest.TestApp, str]:
    """A new browser whose session is bound to ``user``, and its id."""
    browser = make_app(f)
    log_in(browser, user, "ua")
    session_id: str = results(browser.get("/do?op=id"))[0]
    return browser, session_id


def entries(client: Any, prefix: str, user: str) -> dict[str, float]:
    raw = client.zrange(index_key(prefix, user), 0, -1, withscores=True)
    return {member.decode(): score for member, score in raw}


def suspect(
    client: Any, prefix: str, user: str, session_id: str, seconds: float = 60
) -> None:
    """Make ``user``'s index believe the session expired ``seconds`` ago."""
    client.zadd(index_key(prefix, user), {session_id: time.time() - seconds})


def left_behind(client: Any, prefix: str, count: int) -> None:
    """The indexes of ``count`` users who never came back: one entry each,
    past its score, whose session is gone."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        pipe.zadd(index_key(prefix, f"user{n}"), {f"gone{n}": now - 10})
    pipe.execute()


def swept(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.err
    found: dict[str, Any] = json.loads(result.out)
    return found


def logged_in(browser: webtest.TestApp) -> bool:
    return results(browser.get("/do?op=new"))[0] is False


# -- a batch of indexes: Keyspace and UserSessions -----------------------------


def test_the_sweep_of_a_batch_of_indexes(server: BaseServer, prefix: str) -> None:
    client = server.client()
    f = factory(server.url, prefix)
    _, live = bound(f, "ann")
    _, gone = bound(f, "ann")
    _, bob_gone = bound(f, "bob")
    for session_id in (gone, bob_gone):
        client.delete(prefix + session_id)
    ann, bob = index_key(prefix, "ann"), index_key(prefix, "bob")
    now = time.time()
    suspects = {ann: [(live, now - 5), (gone, now - 5)], bob: [(bob_gone, now - 5)]}
    # (removed, re-scored, indexes emptied)
    assert UserSessions(f).sweep(suspects, now) == (2, 1, 1)
    assert list(entries(client, prefix, "ann")) == [live]
    assert entries(client, prefix, "ann")[live] > now + 1000
    assert not client.exists(bob)
    # An entry not past its score is not looked at, even if given.
    _, later = bound(f, "ann")
    client.delete(prefix + later)
    assert UserSessions(f).sweep({ann: [(later, now + 5)]}, now) == (0, 0, 0)
    assert later in entries(client, prefix, "ann")


def test_the_suspects_come_a_batch_at_a_time(server: BaseServer, prefix: str) -> None:
    client = server.client()
    now = time.time()
    many, few = index_key(prefix, "many"), index_key(prefix, "few")
    client.zadd(many, {f"m{n}": now - 100 + n for n in range(7)})
    client.zadd(few, {"f0": now - 1, "f1": now - 2, "later": now + 100})
    keyspace = Keyspace(client, prefix, batch_size=3)
    ((node, keys),) = keyspace.index_batches()
    assert sorted(keys) == sorted([many.encode(), few.encode()])
    chunks = list(keyspace.index_suspects(node, [*keys, keys[0]], now))
    assert all(sum(map(len, chunk.values())) <= 3 for chunk in chunks)
    found: dict[str, list[str]] = {}
    for chunk in chunks:
        for key, pairs in chunk.items():
            found.setdefault(key, []).extend(member for member, _ in pairs)
    # The oldest batch of each index (the rest is for the next sweep), each
    # index once however often it is given.
    assert found == {many: ["m0", "m1", "m2"], few: ["f1", "f0"]}
    assert len(chunks) == 2


# -- psessions sweep: what goes, what stays ------------------------------------


def test_dead_suspects_go_and_an_emptied_index_is_deleted(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    f = factory(server.url, prefix)
    client = server.client()
    _, ann_gone = bound(f, "ann")
    _, ann_kept = bound(f, "ann")
    _, bob_gone = bound(f, "bob")
    kept_score = entries(client, prefix, "ann")[ann_kept]
    for user, session_id in (("ann", ann_gone), ("bob", bob_gone)):
        client.delete(prefix + session_id)
        suspect(client, prefix, user, session_id)

    result = run(capsys, ini(), "sweep")
    assert result.code == 0, result.err
    assert result.out == (
        f"swept 2 user indexes under {prefix!r} on {server.host}:{server.port}: "
        "removed 2 entries of ended sessions, 1 indexes left empty and deleted; "
        "re-scored 0 entries of live sessions\n"
    )
    assert result.err == ""
    assert entries(client, prefix, "ann") == {ann_kept: kept_score}
    assert not client.exists(index_key(prefix, "bob"))
    assert client.exists(prefix + ann_kept)


def test_a_live_suspect_is_kept_with_its_real_expiry(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    browser, session_id = bound(factory(server.url, prefix), "ann")
    client.expire(prefix + session_id, 500)  # used since: its TTL is its own
    suspect(client, prefix, "ann", session_id)
    before = time.time()
    found = swept(run(capsys, ini(), "sweep", "--json"))
    assert found == {
        "prefix": prefix,
        "server": f"{server.host}:{server.port}",
        "indexes": 1,
        "removed": 0,
        "deleted": 0,
        "rescored": 1,
    }
    score = entries(client, prefix, "ann")[session_id]
    assert before + 490 < score <= time.time() + 500
    assert client.ttl(index_key(prefix, "ann")) == -1  # no deadline to expire at
    assert logged_in(browser)


def test_a_gone_session_not_yet_past_its_score_is_left_alone(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    # As a session being bound right now on another Cluster node looks.
    client = server.client()
    _, session_id = bound(factory(server.url, prefix), "ann")
    score = entries(client, prefix, "ann")[session_id]
    assert score > time.time() + 1000
    client.delete(prefix + session_id)
    found = swept(run(capsys, ini(), "sweep", "--json"))
    assert (found["indexes"], found["removed"], found["rescored"]) == (1, 0, 0)
    assert entries(client, prefix, "ann") == {session_id: score}


def test_a_live_session_without_expiry_is_kept_with_score_inf(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    _, session_id = bound(factory(server.url, prefix), "ann")
    client.persist(prefix + session_id)
    suspect(client, prefix, "ann", session_id)
    found = swept(run(capsys, ini(), "sweep", "--json"))
    assert (found["removed"], found["rescored"]) == (0, 1)
    assert entries(client, prefix, "ann") == {session_id: math.inf}


def test_with_absolute_timeout_an_index_still_expires_with_its_deadline(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    f = factory(server.url, prefix, absolute_timeout=3600)
    _, gone = bound(f, "ann")
    _, kept = bound(f, "ann")
    client.delete(prefix + gone)
    suspect(client, prefix, "ann", gone)
    found = swept(run(capsys, ini(absolute_timeout="3600"), "sweep", "--json"))
    assert (found["removed"], found["deleted"]) == (1, 0)
    assert list(entries(client, prefix, "ann")) == [kept]
    # The update ran with deadlines: EXPIREAT, not PERSIST.
    assert 3500 < client.ttl(index_key(prefix, "ann")) <= 3602


def test_end_all_after_a_sweep_still_ends_every_live_session(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    f = factory(server.url, prefix)
    fresh, _ = bound(f, "ann")
    used, used_id = bound(f, "ann")
    forever, forever_id = bound(f, "ann")
    _, gone_id = bound(f, "ann")
    bob, _ = bound(f, "bob")
    client.persist(prefix + forever_id)
    client.delete(prefix + gone_id)
    for session_id in (used_id, forever_id, gone_id):
        suspect(client, prefix, "ann", session_id)

    found = swept(run(capsys, ini(), "sweep", "--json"))
    assert (found["indexes"], found["removed"], found["rescored"]) == (2, 1, 2)
    assert len(entries(client, prefix, "ann")) == 3
    assert UserSessions(f).end_all("ann") == 3
    assert [logged_in(b) for b in (fresh, used, forever, bob)] == [
        False,
        False,
        False,
        True,
    ]
    assert not client.exists(index_key(prefix, "ann"))


def test_a_sweep_leaves_the_indexes_of_another_prefix_alone(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    # The other prefix starts with this one: only MATCH prefix + "user:{"
    # keeps its indexes out. Swept under the wrong prefix, its sessions
    # would look gone, and its live entries would go.
    other = prefix + "other:"
    client = server.client()
    before: dict[str, dict[str, float]] = {}
    for name in (prefix, other):
        f = factory(server.url, name)
        _, live = bound(f, "ann")
        _, gone = bound(f, "ann")
        client.delete(name + gone)
        suspect(client, name, "ann", live)
        suspect(client, name, "ann", gone)
        before[name] = entries(client, name, "ann")

    found = swept(run(capsys, ini(), "sweep", "--json"))
    assert (found["indexes"], found["removed"], found["rescored"]) == (1, 1, 1)
    assert entries(client, other, "ann") == before[other]
    assert len(entries(client, prefix, "ann")) == 1

    found = swept(run(capsys, ini(prefix=other), "sweep", "--json"))
    assert (found["indexes"], found["removed"], found["rescored"]) == (1, 1, 1)
    assert len(entries(client, other, "ann")) == 1


# -- how the store is walked ---------------------------------------------------


def test_the_indexes_are_swept_a_batch_at_a_time(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    client = server.client()
    for script in SCRIPTS:  # so that no round trip is redis-py loading one
        client.script_load(script.script)
    fill(client, prefix, 30)  # sessions, which the sweep never looks at
    left_behind(client, prefix, 25)
    wire.sent.clear()

    found = swept(run(capsys, ini(), "sweep", "--json", "--batch-size", "10"))
    sent, wire.sent = wire.sent, []
    assert (found["indexes"], found["removed"], found["deleted"]) == (25, 25, 25)
    assert client.keys(prefix + "user:*") == []
    assert len(client.keys(prefix + "*")) == 30

    wire.sent = sent
    assert wire.commands(b"KEYS") == []
    scans = wire.commands(b"SCAN")
    pattern = (prefix + "user:{*").encode()
    # As many SCANs as the server takes (COUNT is a hint), from cursor 0.
    assert scans and scans[0][1] == b"0"
    for scan in scans:
        options = dict(zip(scan[2::2], scan[3::2], strict=True))
        assert options == {b"MATCH": pattern, b"COUNT": b"10", b"TYPE": b"zset"}
    # Per batch of at most 10 indexes: one pipeline of ZRANGEBYSCORE, one of
    # PTTL, one of the index script (each with its EXISTS); nothing else.
    trips = [s for s in wire.sent if not {c[0] for c in s.commands} <= HANDSHAKE]
    batches = [s for s in trips if s.named(b"ZRANGEBYSCORE")]
    assert len(trips) == len(scans) + 3 * len(batches)
    for name in (b"ZRANGEBYSCORE", b"PTTL", b"EVALSHA", b"EXISTS"):
        per_trip = [len(s.named(name)) for s in trips if s.named(name)]
        assert len(per_trip) == len(batches) and sum(per_trip) == 25
        assert max(per_trip) <= 10
    assert all(
        {c[0] for c in s.commands} == {b"EVALSHA", b"EXISTS"}
        for s in trips
        if s.named(b"EVALSHA")
    )


def test_a_running_count_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    left_behind(server.client(), prefix, 25)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    result = run(capsys, ini(), "sweep", "--batch-size", "10")
    assert result.code == 0
    assert result.out.startswith("swept 25 user indexes under")
    shown = terminal.getvalue()
    assert shown.endswith("\rswept 25 user indexes, removed 25 entries\n")
    assert shown.count("\rswept ") >= 3  # one update per batch


def test_a_sweep_that_finds_no_index(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    fill(server.client(), prefix, 3)
    found = swept(run(capsys, ini(), "sweep", "--json"))
    assert (found["indexes"], found["removed"], found["deleted"]) == (0, 0, 0)
    assert "warning" not in capsys.readouterr().err  # the ini sets a url

    command = SweepCommand(["psessions", "app.ini"])
    command.bootstrap = default_server_bootstrap(server, prefix)
    assert command.run() == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("swept 0 user indexes under")
    assert captured.err == (
        f"psessions: warning: nothing found: {server.host}:{server.port} is the "
        "default server: no redis.sessions.url in app.ini (is the "
        "application's Redis elsewhere?)\n"
    )


def test_sweep_is_listed_and_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "--help")
    assert "sweep" in result.out and "remove ended sessions" in result.out
    result = run(capsys, "x.ini", "sweep", "--help")
    assert result.code == 0
    for text in ("--batch-size", "--json", "cron", "never KEYS"):
        assert text in result.out


# -- Cluster -------------------------------------------------------------------


@pytest.mark.topology
def test_sweep_covers_every_cluster_master(
    capsys: pytest.CaptureFixture[str],
    cluster: ClusterTopology,
    prefix: str,
    tmp_path: Path,
    wire: Wire,
) -> None:
    client = RedisCluster.from_url(cluster.url)
    f = factory(cluster.url, prefix, cluster=True)
    users = [f"user{n}" for n in range(12)]
    live: dict[str, tuple[webtest.TestApp, str]] = {}
    for user in users:
        live[user] = _, session_id = bound(f, user)
        _, gone = bound(f, user)
        client.delete(prefix + gone)
        suspect(client, prefix, user, gone)
        suspect(client, prefix, user, session_id)
    _, alone = bound(f, "alone")  # an index left empty
    client.delete(prefix + alone)
    suspect(client, prefix, "alone", alone)
    owners = {client.keyslot(index_key(prefix, user)) for user in users}
    assert len(owners) > 3  # the indexes are spread over the slots
    path = write_ini(
        tmp_path, secret=SECRET, url=cluster.url, prefix=prefix, cluster="true"
    )
    wire.sent.clear()

    found = swept(run(capsys, str(path), "sweep", "--json", "--batch-size", "5"))
    assert (found["indexes"], found["removed"], found["deleted"]) == (13, 13, 1)
    assert found["rescored"] == 12
    assert {s.port for s in wire.trips_with(b"SCAN")} == {n.port for n in cluster.nodes}
    assert not client.exists(index_key(prefix, "alone"))
    for user in users:
        (session_id,) = entries(client, prefix, user)
        assert session_id == live[user][1]
        assert entries(client, prefix, user)[session_id] > time.time() + 1000
        assert UserSessions(f).end_all(user) == 1
        assert not logged_in(live[user][0])
