"""Sentinel: a connection pool that follows the master.

redis-py's Sentinel pool asks the sentinels for the master only when it
opens a connection, so pooled connections go on writing to a demoted master
until it is reconfigured as a replica, and all of that is lost when it
resyncs. :class:`FollowingSentinelPool` looks the master up again, off the
request's path, whenever its last answer is older than
:data:`FOLLOW_INTERVAL`, asks every sentinel (the newest configuration
wins), and holds writes (the store unavailable) for :data:`HOLD_LIMIT`
seconds at most while the sentinels promote a replica. Its connections
connect once per attempt, to the master last found
(:class:`OneTryConnection`), so that the time bound of
:mod:`pyramid_redis_sessions.client` holds;
:func:`~pyramid_redis_sessions.client.make_client` builds it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.sentinel import (
    MasterNotFoundError,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

__all__ = [
    "FOLLOW_INTERVAL",
    "HOLD_LIMIT",
    "FollowingSentinelPool",
    "OneTryConnection",
    "OneTrySSLConnection",
]

#: Seconds between two lookups of the master while requests come: a switch
#: is followed this long after the sentinels announce it.
FOLLOW_INTERVAL = 0.25
#: Seconds at most that writes are held (the store unavailable) while the
#: sentinels promote a replica: Sentinel itself learns of the promotion up
#: to a second after it.
HOLD_LIMIT = 3.0


class OneTryConnection(SentinelManagedConnection):
    """A connection to the master the pool last found. It connects once per
    attempt (the command's retry policy repeats it) and never asks the
    sentinels itself: the pool does, off the request's path."""

    _choosing = False  # connect_to() under way: open the socket, once

    def connect(self) -> None:
        if self._sock:
            return
        pool = self.connection_pool.connection_pool_ref()
        if not isinstance(pool, FollowingSentinelPool):  # pragma: no cover
            self.connect_to(self.connection_pool.get_master_address())  # type: ignore[no-untyped-call]
            return
        address = pool.address_to_connect()
        self._choosing = True
        try:
            self.connect_to(address)  # type: ignore[no-untyped-call]
        except (ConnectionError, TimeoutError):
            pool.follow(now=True, suspect=True)  # the next attempt waits for it
            raise
        finally:
            self._choosing = False

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        # redis-py >= 6 reconnects a dropped connection here, to the address
        # it had and with the socket connect retried: go through connect().
        if self._choosing:
            kwargs["retry_socket_connect"] = False
            super().connect_check_health(*args, **kwargs)
        elif not self._sock:
            self.connect()

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except ConnectionError:
            # READONLY from a demoted master (redis-py turns it into a
            # ConnectionError and disconnects): look the master up now.
            pool = self.connection_pool.connection_pool_ref()
            if isinstance(pool, FollowingSentinelPool) and self._sock is None:
                pool.follow(now=True, suspect=True)
            raise


class OneTrySSLConnection(OneTryConnection, SentinelManagedSSLConnection):
    pass


class FollowingSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool asks for the master only when it opens a
    connection, so pooled connections would go on writing to a master that
    the sentinels replaced until it is demoted (seconds later), and what
    they wrote is lost when it resyncs. This one asks again, in a thread of
    its own, when a connection is checked out and its last answer is more
    than :data:`FOLLOW_INTERVAL` old; a new answer disconnects the idle
    connections, and redis-py drops the busy ones when they come back.

    Every sentinel is asked, and the answer of the newest configuration
    epoch wins: the sentinel that leads a failover knows its outcome first.
    While one reports the master being failed over, checkouts fail
    (:data:`HOLD_LIMIT` seconds at most, each after waiting for a fresh
    answer at most ``socket_connect_timeout``): until Sentinel has seen the replica
    promoted, which takes it up to a second, whatever the old master takes
    is lost.

    A request waits for the sentinels only when no master is known yet (the
    first request of a process), at most ``socket_connect_timeout +
    socket_timeout`` per attempt; for the lookup its checkout started, or
    after a connection to the master failed, at most
    ``socket_connect_timeout`` (sub-millisecond while the sentinels
    answer). Fork-safe: the state is made anew in a child (redis-py resets
    a pool whose process id changed), and no thread crosses a fork.
    """

    def reset(self) -> None:
        super().reset()  # type: ignore[no-untyped-call]
        self._lookup_lock = threading.Lock()
        self._lookup_done = threading.Event()
        self._lookup_done.set()  # none running
        self._lookup_started = -float("inf")
        self._lookup_error: BaseException | None = None
        self._holding_until: float | None = None
        self._suspect = False  # a connection to the master failed

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        self._checkpid()
        running = self._lookup_done
        done = self.follow(now=self._held())
        if done is not running:
            # This checkout started a lookup (the last answer is old, or
            # writes are held): wait for it, one connect timeout at most, so
            # that the connection opened here, outside the command's
            # retries, goes to the master the sentinels name now.
            done.wait(self.connection_kwargs.get("socket_connect_timeout"))
        if self._held():
            raise MasterNotFoundError(
                f"the sentinels of {self.service_name!r} are failing the master over"
            )
        return super().get_connection(*args, **kwargs)

    def _held(self) -> bool:
        holding = self._holding_until
        return holding is not None and time.monotonic() < holding

    def follow(self, *, now: bool = False, suspect: bool = False) -> threading.Event:
        """Start a lookup unless one runs or the last started less than
        :data:`FOLLOW_INTERVAL` ago (``now``: whenever none runs); the
        event set when the running lookup ends. ``suspect``: the master
        failed a connection, so new ones wait for the next answer."""
        with self._lookup_lock:
            if suspect:
                self._suspect = True
            done = self._lookup_done
            started = time.monotonic()
            if not done.is_set() or (
                not now and started - self._lookup_started < FOLLOW_INTERVAL
            ):
                return done
            done = self._lookup_done = threading.Event()
            self._lookup_started = started
        threading.Thread(
            target=self._lookup, args=(done,), name="sentinel-lookup", daemon=True
        ).start()
        return done

    def _lookup(self, done: threading.Event) -> None:
        try:
            address, failing_over = self._ask_sentinels()
        except (ConnectionError, TimeoutError) as e:  # no sentinel answered
            self._lookup_error = e
        else:
            self._lookup_error = None
            self._suspect = False
            if failing_over and address == self.proxy.master_address:
                # Promoting a replica: what the old master takes from now on
                # is dropped when it resyncs. Hold writes, a while at most.
                if self._holding_until is None:
                    self._holding_until = time.monotonic() + HOLD_LIMIT
            else:
                self._holding_until = None
            if address != self.proxy.master_address:
                self.proxy.master_address = address
                # Idle connections reconnect to the new master when next
                # used; busy ones are dropped when released (owns_connection).
                self.disconnect(inuse_connections=False)
        finally:
            done.set()

    def _ask_sentinels(self) -> tuple[tuple[str, int], bool]:
        """Every sentinel's master for the service: the one of the newest
        configuration, and whether a sentinel is failing it over. All are
        asked: the sentinel that leads a failover knows of it, and of its
        outcome, before the others."""
        manager = self.sentinel_manager
        best: tuple[int, tuple[str, int]] | None = None
        failing_over = False
        errors = []
        for sentinel in manager.sentinels:
            try:
                state = sentinel.sentinel_masters().get(self.service_name)
            except (ConnectionError, TimeoutError, ResponseError) as e:
                address = "{host}:{port}".format_map(
                    sentinel.connection_pool.connection_kwargs
                )
                errors.append(f"{address}: {e}")
                continue
            if not state:
                continue
            failing_over |= "failover_in_progress" in str(state.get("flags", ""))
            if manager.check_master_state(state, self.service_name):
                epoch = int(state.get("config-epoch", 0))
                if best is None or epoch > best[0]:
                    best = (epoch, (state["ip"], int(state["port"])))
        if best is None:
            why = f": {'; '.join(errors)}" if errors else ""
            raise MasterNotFoundError(f"No master found for {self.service_name!r}{why}")
        return best[1], failing_over

    def address_to_connect(self) -> tuple[str, int]:
        """The master to connect to: the last one found, or, after a
        connection to it failed, the answer of the lookup under way, waited
        for ``socket_connect_timeout`` at most; none found yet, a lookup is
        waited for one attempt's timeouts (``socket_connect_timeout +
        socket_timeout``) at most."""
        kwargs = self.connection_kwargs
        c, s = kwargs.get("socket_connect_timeout"), kwargs.get("socket_timeout")
        done = self._lookup_done
        if self.proxy.master_address is None:
            done = self.follow(now=True)
            done.wait(None if c is None or s is None else c + s)
        elif self._suspect and not done.is_set():
            done.wait(c)
        address = self.proxy.master_address
        if address is None:
            why = f": {self._lookup_error}" if self._lookup_error else ""
            raise MasterNotFoundError(
                f"No master found for {self.service_name!r} yet{why}"
            )
        return address  # type: ignore[no-any-return]
