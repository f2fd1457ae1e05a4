"""``readable.poller``: whether a socket has something to read, asked with
the GIL held, answers as ``select`` (the original) does, on socket pairs
and on a real server's connection; and a cache hit with nothing arrived
calls no ``recv`` at all.
"""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pyramid.request import Request

from pyramid_redis_sessions.readable import poller
from tests.app import factory, finish
from tests.servers import BaseServer


def select_says(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def readable_of(sock: socket.socket) -> Callable[[], bool]:
    readable = poller(sock.fileno())
    assert readable is not None
    return readable


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's libc")
def test_there_is_a_poller_on_linux() -> None:
    with socket.socket() as sock:
        assert poller(sock.fileno()) is not None


def test_it_answers_as_select_does(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    readable = readable_of(a)
    seen = []
    seen.append((readable(), select_says(a)))  # nothing yet
    b.sendall(b"+PONG\r\n")
    seen.append((readable(), select_says(a)))  # data waiting
    seen.append((readable(), select_says(a)))  # still waiting: not consumed
    assert a.recv(100) == b"+PONG\r\n"
    seen.append((readable(), select_says(a)))  # drained
    b.close()
    seen.append((readable(), select_says(a)))  # end of file: recv says so
    assert seen == [(False, False), (True, True), (True, True), (False, False),
                    (True, True)]  # fmt: skip
    assert a.recv(100) == b""


def test_it_answers_as_select_does_on_a_server_connection(server: BaseServer) -> None:
    client = redis.Redis.from_url(server.url)
    try:
        conn: Any = client.connection_pool.get_connection()
        try:
            conn.connect()
            sock = conn._sock
            readable = readable_of(sock)
            assert (readable(), select_says(sock)) == (False, False)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            select.select([sock], [], [], 5)  # until the answer is here
            assert (readable(), select_says(sock)) == (True, True)
            assert conn.read_response() in (b"PONG", "PONG")
            assert (readable(), select_says(sock)) == (False, False)
        finally:
            client.connection_pool.release(conn)
    finally:
        client.close()


class CountingSocket:
    """A socket that counts its ``recv`` calls and otherwise is the one it
    wraps (the cache's own, on a real server)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self._sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_hit_with_nothing_arrived_calls_no_recv(
    server: BaseServer, prefix: str
) -> None:
    f = factory(server.url, prefix)
    write = Request.blank("/")
    session = f(write)
    session["a"] = 1
    cookie = finish(session).headers["Set-Cookie"].split(";", 1)[0]

    def read() -> tuple[Any, str | None]:
        found = f(Request.blank("/", headers={"Cookie": cookie}))
        return found.get("a"), found.loaded_from

    assert read() == (1, "redis")
    cache = f.store.cache
    assert cache is not None and cache._sock is not None
    counting = CountingSocket(cache._sock)
    cache._sock = counting  # type: ignore[assignment]
    assert [read() for _ in range(20)] == [(1, "local cache")] * 20
    assert counting.recvs == 0
    # Another client's write: the next read finds the message waiting,
    # receives it, and goes to Redis.
    admin = server.admin()
    admin.delete(prefix + f(Request.blank("/", headers={"Cookie": cookie})).session_id)
    assert cache.sync()
    assert counting.recvs > 0
    assert read() == (None, None)  # asked Redis: no session, loaded from nowhere
