"""Sweeping the user-sessions indexes: the entries of ended sessions leave
them, and no live session's entry ever does, against real servers the
suite started.

An entry is made a suspect by lowering its score with a direct ``ZADD`` on
the test's own server (as if its session had been read, not saved, since),
and a session is ended by deleting its key: nothing sleeps.
"""

from __future__ import annotations

import time
from typing import Any

import webtest

from pyramid_redis_sessions import SessionFactory
from pyramid_redis_sessions.admin import Keyspace
from pyramid_redis_sessions.users import UserSessions, index_key
from tests.app import factory, make_app, results
from tests.servers import BaseServer
from tests.test_cli import log_in


def bound(f: SessionFactory, user: str) -> tuple[webtest.TestApp, str]:
    """A new browser whose session is bound to ``user``, and its id."""
    browser = make_app(f)
    log_in(browser, user, "ua")
    session_id: str = results(browser.get("/do?op=id"))[0]
    return browser, session_id


def entries(client: Any, prefix: str, user: str) -> dict[str, float]:
    raw = client.zrange(index_key(prefix, user), 0, -1, withscores=True)
    return {member.decode(): score for member, score in raw}


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
