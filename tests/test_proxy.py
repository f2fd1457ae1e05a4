"""``tests.proxy.FreezableProxy`` against a real server: forwarding, a freeze
that holds bytes back (and delivers them, in order, on thaw), and a cut."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.proxy import FreezableProxy
from tests.servers import BaseServer
from tests.topologies import wait_until

#: Long enough for loopback, short enough to keep the tests quick.
SILENCE = 0.3


@pytest.fixture
def proxy(server: BaseServer) -> Iterator[FreezableProxy]:
    with FreezableProxy(server.host, server.port) as made:
        yield made


def strict_client(url: str, **kwargs: Any) -> redis.Redis:
    """One connection, no retries: each fault shows in the very next call."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SILENCE,
        socket_connect_timeout=SILENCE,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
        **kwargs,
    )


def raw(proxy: FreezableProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=SILENCE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def test_commands_pass_through(
    server: BaseServer, proxy: FreezableProxy, prefix: str
) -> None:
    assert proxy.url == f"redis://127.0.0.1:{proxy.port}/0"
    client = strict_client(proxy.url)
    try:
        assert client.set(f"{prefix}k", "v")
        assert client.get(f"{prefix}k") == b"v"
        # Written through the proxy, visible on the server itself.
        assert server.admin().get(f"{prefix}k") == b"v"
        assert proxy.connections == 1
        value = b"x" * 3_000_000  # more than any socket buffer holds
        assert client.set(f"{prefix}big", value)
        assert client.get(f"{prefix}big") == value
    finally:
        client.close()
    wait_until(lambda: proxy.connections == 0, "the pair to close")


def test_many_concurrent_connections(proxy: FreezableProxy, prefix: str) -> None:
    pool = redis.ConnectionPool.from_url(proxy.url, socket_timeout=5)
    client = redis.Redis(connection_pool=pool)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(5)  # all at once: each needs a connection of its own
            for i in range(20):
                client.set(f"{prefix}{n}", i)
                assert client.get(f"{prefix}{n}") == str(i).encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    try:
        assert errors == []
        assert proxy.connections == 20
    finally:
        pool.disconnect()


def test_freeze_is_silence_and_thaw_delivers_in_order(
    server: BaseServer, proxy: FreezableProxy, prefix: str
) -> None:
    client = strict_client(proxy.url)
    before = raw(proxy)
    try:
        assert client.ping()
        wait_until(lambda: proxy.connections == 2, "both connections")
        pings = server.command_stats().get("ping", 0)
        proxy.freeze()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.get(f"{prefix}k")
        # A connection made during the freeze is held too.
        during = raw(proxy)
        with during:
            key = f"{prefix}n".encode()
            before.sendall(b"PING\r\n")
            during.sendall(b"SET " + key + b" 1\r\nINCR " + key + b"\r\n")
            during.sendall(b"INCR " + key + b"\r\n")
            for sock in (before, during):
                # Silence, not a reset or an end of stream.
                with pytest.raises(socket.timeout):
                    sock.recv(64)
            # Held at the proxy: the server has not seen them either.
            assert server.command_stats().get("ping", 0) == pings
            assert server.admin().get(key) is None
            proxy.thaw()
            assert read_exactly(before, 7) == b"+PONG\r\n"
            assert read_exactly(during, 13) == b"+OK\r\n:2\r\n:3\r\n"
        # redis-py dropped the connection that timed out and makes a new one.
        assert client.get(key) == b"3"
        assert strict_client(proxy.url).ping()
    finally:
        before.close()
        client.close()


def test_cut_resets_connections_and_accepts_new_ones(proxy: FreezableProxy) -> None:
    client = strict_client(proxy.url)
    sock = raw(proxy)
    try:
        assert client.ping()
        wait_until(lambda: proxy.connections == 2, "both connections")
        proxy.cut()
        assert proxy.connections == 0
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"PING\r\n")
            sock.recv(64)
        fresh = strict_client(proxy.url)
        assert fresh.ping()
        fresh.close()
        assert client.ping()  # reconnects, through the proxy
    finally:
        sock.close()
        client.close()


def test_close_while_frozen(server: BaseServer) -> None:
    proxy = FreezableProxy(server.host, server.port).start()
    sock = raw(proxy)
    with sock:
        wait_until(lambda: proxy.connections == 1, "the connection")
        proxy.freeze()
        proxy.close()
        assert proxy.connections == 0
        assert sock.recv(64) == b""  # closed, not left hanging
    with pytest.raises(ConnectionRefusedError):
        raw(proxy).close()
    proxy.close()  # twice is harmless
