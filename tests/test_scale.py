"""One factory, one client, shared by threads and by forked workers."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from pyramid_redis_sessions import SessionFactory
from tests.app import factory, make_app, results
from tests.servers import BaseServer

THREADS = 8
REQUESTS = 15


def _client_session(f: SessionFactory, n: int) -> list[Any]:
    """One user's visits: each request adds one to their own counter."""
    testapp = make_app(f)
    seen = []
    for i in range(n):
        res = testapp.get(f"/do?op=get:n&op=set:n:{i + 1}")
        seen.append(results(res)[0])
    return seen


def test_threads_share_one_factory_and_keep_their_sessions_apart(
    server: BaseServer, prefix: str
) -> None:
    f = factory(server.url, prefix)
    outcomes: dict[int, list[Any]] = {}

    def user(k: int) -> None:
        outcomes[k] = _client_session(f, REQUESTS)

    threads = [threading.Thread(target=user, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    expected = [None, *(str(i) for i in range(1, REQUESTS))]
    assert outcomes == dict.fromkeys(range(THREADS), expected)
    assert len(server.client().keys(prefix + "*")) == THREADS


def _in_child(f: SessionFactory, conn: Any) -> None:
    try:
        conn.send(_client_session(f, 3))
    except Exception as e:  # reported to the parent, which fails the test
        conn.send(repr(e))
    finally:
        conn.close()


def test_forked_worker_gets_its_own_connections(
    server: BaseServer, prefix: str
) -> None:
    f = factory(server.url, prefix)
    _client_session(f, 2)  # the parent's pool now holds a connection
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_in_child, args=(f, child_end))
    child.start()
    assert parent_end.poll(30), "the forked worker did not answer"
    assert parent_end.recv() == [None, "1", "2"]
    child.join(30)
    assert child.exitcode == 0
    # The parent's own connection still works after the child used the pool.
    assert _client_session(f, 2) == [None, "1"]
