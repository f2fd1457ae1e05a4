"""Count Redis round trips, for tests of an application's own requests.

A round trip is one request/response exchange with the server: a command,
or a whole pipeline. Build a connection pool with
:meth:`RoundTripCounter.pool` and hand it to the session factory
(``connection_pool=``); every exchange made through it is recorded, with
the commands it carried::

    counter = RoundTripCounter()
    factory = RedisSessionFactory(secret, connection_pool=counter.pool(url))
    ...  # run a request
    assert counter.commands == [["EVALSHA"]]  # one round trip: the load

What redis-py sends on its own while connecting (HELLO, AUTH, SELECT,
CLIENT SETNAME/SETINFO) and health checks are kept apart and not counted.

.. versionadded:: 2.0
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import redis
from redis.connection import Connection, ConnectionPool, parse_url

__all__ = ["CountingConnectionMixin", "RoundTripCounter", "split_packed"]


def split_packed(
    packed: bytes | str | Sequence[bytes | memoryview],
) -> list[tuple[bytes, ...]]:
    """Split what redis-py put on the wire into the commands it holds."""
    if isinstance(packed, str):
        data = packed.encode()
    elif isinstance(packed, bytes):
        data = packed
    else:
        data = b"".join(bytes(chunk) for chunk in packed)
    commands: list[tuple[bytes, ...]] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] != b"*":
            raise ValueError(
                f"not a RESP array at byte {pos}: {data[pos : pos + 20]!r}"
            )
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        args: list[bytes] = []
        for _ in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            pos = end + 2
            args.append(data[pos : pos + length])
            pos += length + 2
        commands.append(tuple(args))
    return commands


class RoundTripCounter:
    """Counts request/response exchanges made through its connection pools.

    ``counter.pool(url)`` returns a ``redis.ConnectionPool``, and
    ``counter.instrument(client)`` makes any client (standalone, Sentinel,
    Cluster) count here; every time one of their connections writes a
    request (one command, or a whole pipeline or transaction) that is one
    round trip. A request written while another connection of the same
    thread still waits for its replies (a Cluster pipeline writes to every
    node before it reads any) belongs to that round trip: the wait is one
    network round trip, however many nodes answer. ``exchanges`` tells
    how many connections each round trip used. What redis-py sends on its
    own while connecting (HELLO, AUTH, SELECT, CLIENT SETNAME/SETINFO) and
    health-check PINGs are kept apart in ``internal`` and not counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: One entry per round trip: the commands sent, each as its arguments.
        self.requests: list[list[tuple[bytes, ...]]] = []
        #: Per round trip, how many connections (Cluster nodes) it wrote to.
        self.exchanges: list[int] = []
        #: Requests redis-py made by itself (handshakes, health checks).
        self.internal: list[list[tuple[bytes, ...]]] = []
        # Per thread: the connections that wait for replies right now.
        self._waiting = threading.local()

    @property
    def count(self) -> int:
        """Round trips since creation or the last ``reset()``."""
        with self._lock:
            return len(self.requests)

    @property
    def commands(self) -> list[list[str]]:
        """Command names per round trip: ``[['GETEX'], ['MULTI', 'SET', 'EXEC']]``.

        Transactions show the MULTI and EXEC that frame them.
        """
        with self._lock:
            return [_names(request) for request in self.requests]

    @property
    def internal_commands(self) -> list[list[str]]:
        with self._lock:
            return [_names(request) for request in self.internal]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.exchanges.clear()
            self.internal.clear()

    def _busy(self) -> set[Any]:
        busy: set[Any] | None = getattr(self._waiting, "connections", None)
        if busy is None:
            busy = self._waiting.connections = set()
        return busy

    def record(
        self, packed: Any, *, internal: bool, connection: Any = None
    ) -> list[tuple[bytes, ...]]:
        commands = split_packed(packed)
        with self._lock:
            if internal:
                self.internal.append(commands)
                return commands
            busy = self._busy()
            if any(other is not connection for other in busy) and self.requests:
                # Written before the replies of another node's request were
                # read: the same round trip.
                self.requests[-1].extend(commands)
                self.exchanges[-1] += 1
            else:
                self.requests.append(commands)
                self.exchanges.append(1)
            if connection is not None:
                busy.add(connection)
        return commands

    def answered(self, connection: Any) -> None:
        """``connection`` has read all the replies it waited for."""
        self._busy().discard(connection)

    def connection_class(self, base: type[Any]) -> type[Any]:
        """``base`` (a redis-py connection class), counting here."""
        if issubclass(base, CountingConnectionMixin):
            base = base.__mro__[2]  # instrumented before: count here instead
        return type(
            f"Counting{base.__name__}",
            (CountingConnectionMixin, base),
            {"counter": self},
        )

    def pool(self, url: str, **kwargs: Any) -> ConnectionPool:
        """A connection pool for ``url`` whose round trips this counter sees."""
        parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        base = parsed.get("connection_class", Connection)
        return ConnectionPool.from_url(
            url, connection_class=self.connection_class(base), **kwargs
        )

    def instrument(self, client: Any) -> Any:
        """Make ``client`` (``redis.Redis`` of any kind, or ``RedisCluster``)
        count its round trips here, from its next connection on; returns it.

        Open connections are closed, so that every later request goes
        through a counting one.
        """
        from redis.cluster import RedisCluster

        if isinstance(client, RedisCluster):
            manager = client.nodes_manager
            base = manager.connection_kwargs.get("connection_class", Connection)
            # Nodes redis-py meets later are made with these kwargs.
            manager.connection_kwargs["connection_class"] = self.connection_class(base)
            pools = [
                node.redis_connection.connection_pool
                for node in client.get_nodes()  # type: ignore[no-untyped-call]
                if node.redis_connection is not None
            ]
        else:
            pools = [client.connection_pool]
        for pool in pools:
            pool.connection_class = self.connection_class(pool.connection_class)
            pool.disconnect()
            pool.reset()  # forget the idle connections of the old class
        return client

    def client(self, url: str, **kwargs: Any) -> redis.Redis:
        """A ``redis.Redis`` over ``pool(url, **kwargs)``."""
        return redis.Redis(connection_pool=self.pool(url, **kwargs))


def _names(request: Iterable[tuple[bytes, ...]]) -> list[str]:
    return [args[0].decode().upper() for args in request]


class CountingConnectionMixin:
    """Reports each request sent to ``counter``, handshakes marked internal.

    Placed before a redis-py connection class; ``RoundTripCounter.pool``
    builds the combined class.
    """

    counter: ClassVar[RoundTripCounter]
    _internal_depth: int = 0
    #: Replies this connection still has to read.
    _pending: int = 0

    def _internally(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._internal_depth += 1
        try:
            return getattr(super(), method)(*args, **kwargs)
        finally:
            self._internal_depth -= 1

    # redis-py < 6 connects in connect(); later versions in
    # connect_check_health(), which send_packed_command() calls directly.
    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return self._internally("connect", *args, **kwargs)

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        return self._internally("connect_check_health", *args, **kwargs)

    def check_health(self, *args: Any, **kwargs: Any) -> Any:
        return self._internally("check_health", *args, **kwargs)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        super().send_packed_command(command, check_health)  # type: ignore[misc]
        # Counted once written: a request that never left was no round trip.
        internal = self._internal_depth > 0
        sent = self.counter.record(command, internal=internal, connection=self)
        if not internal:
            self._pending += len(sent)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        finally:
            if self._internal_depth == 0 and self._pending > 0:
                self._pending -= 1
                if self._pending == 0:
                    self.counter.answered(self)

    def disconnect(self, *args: Any, **kwargs: Any) -> Any:
        self._pending = 0
        self.counter.answered(self)
        return super().disconnect(*args, **kwargs)  # type: ignore[misc]
