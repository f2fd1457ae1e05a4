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

    ``counter.pool(url)`` returns a ``redis.ConnectionPool``; every time one of
    its connections writes a request (one command, or a whole pipeline or
    transaction) that is one round trip. What redis-py sends on its own while
    connecting (HELLO, AUTH, SELECT, CLIENT SETNAME/SETINFO) and health-check
    PINGs are kept apart in ``internal`` and not counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: One entry per round trip: the commands sent, each as its arguments.
        self.requests: list[list[tuple[bytes, ...]]] = []
        #: Requests redis-py made by itself (handshakes, health checks).
        self.internal: list[list[tuple[bytes, ...]]] = []

    @property
    def count(self) -> int:
        """Round trips since creation or the last ``reset()``."""
        with self._lock:
            return len(self.requests)

    @property
    def commands(self) -> list[list[str]]:
        """Command names per round trip: ``[['EVALSHA'], ['DEL', 'EVALSHA']]``.

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
            self.internal.clear()

    def record(self, packed: Any, *, internal: bool) -> None:
        commands = split_packed(packed)
        with self._lock:
            (self.internal if internal else self.requests).append(commands)

    def pool(self, url: str, **kwargs: Any) -> ConnectionPool:
        """A connection pool for ``url`` whose round trips this counter sees."""
        parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        base = parsed.get("connection_class", Connection)
        connection_class = type(
            f"Counting{base.__name__}",
            (CountingConnectionMixin, base),
            {"counter": self},
        )
        return ConnectionPool.from_url(url, connection_class=connection_class, **kwargs)

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
        self.counter.record(command, internal=self._internal_depth > 0)
