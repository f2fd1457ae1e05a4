"""The local cache: sessions this process has read, kept fresh by Redis.

Redis (6 or later) and Valkey track keys for a client and tell it when any
of them is written, deleted or expires (``CLIENT TRACKING``). The cache
opens one connection per process, turns on tracking for every key under
the factory's prefix with that connection as the target of the messages
(``CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>``), and
subscribes it to ``__redis__:invalidate``. Every call first reads what
has arrived on it without waiting (``poll(2)`` with the GIL held, see
:mod:`.readable`, then ``recv`` if anything came): an invalidated key is
dropped before anything is served.

What it guarantees, and how:

* **Fresh within one network delay.** A key changed by any client is
  dropped as soon as Redis's message arrives; a read that raced with the
  change is not kept (:meth:`LocalCache.begin` and :meth:`LocalCache.put`).
* **No silent staleness.** The cache serves only while its connection has
  answered a heartbeat (``PING``, sent every quarter of ``max_lag`` while the
  cache is used) sent within the last ``max_lag`` seconds. Redis answers
  a ``PING`` after every message queued before it, so an answered heartbeat
  means every change made before it was sent has been seen. A connection
  that is silent longer, breaks, or now leads to another server (a
  Sentinel failover) empties the cache, which then lets every read through
  to Redis until tracking is set up again and a heartbeat answered.
* **Never past expiry.** Redis notices an expired key only when it gets to
  it, so an entry carries its session's deadlines and is not served past
  them, by this process's clock.
* **Processes and threads.** Nothing is opened until first used, and a
  process that finds itself forked starts afresh (the parent's socket is
  never read or closed in the child); one lock guards the rest. At most
  ``size`` entries are kept, the least recently used dropped first.

Entries hold a stored session's fields as Redis returned them and what
:func:`~pyramid_redis_sessions.values.parse` found in them, their MACs
checked: a hit verifies nothing again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster

from .readable import poller
from .values import Record

__all__ = ["CHANNEL", "Entry", "LocalCache", "local_cache_for"]

log = logging.getLogger(__name__)

#: The channel Redis sends invalidation messages on (RESP2).
CHANNEL = b"__redis__:invalidate"
#: The least time between two attempts to set the connection up again.
RETRY_INTERVAL = 1.0
#: The longest a read waits for a heartbeat after the cache was idle for
#: longer than ``max_lag`` (in seconds): answered, the cache is known fresh
#: and kept; not, it is emptied.
REVIVE_WAIT = 0.05
_PING = b"*1\r\n$4\r\nPING\r\n"
_MAX_PINGS = 16


@dataclass(slots=True)
class Entry:
    """A session as the cache keeps it."""

    #: The hash as Redis returned it, field to stored value.
    stored: dict[bytes, bytes]
    #: What ``values.parse`` found in it (never changed by a reader).
    record: Record
    #: The wall-clock time (``time.time()``) past which it is not served:
    #: the earlier of its idle deadline (from its last slide) and its
    #: absolute deadline.
    expires_at: float


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP value of ``buf`` from ``pos``, and where the next starts;
    :class:`_Incomplete` when the bytes are not all there yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = bytes(buf[pos : pos + 1]), bytes(buf[pos + 1 : end]), end + 2
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return ValueError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"_":
        return None, pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind in (b"*", b">"):
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"unexpected reply type {kind!r}")


class LocalCache:
    """A process's sessions of one factory, dropped when Redis says they
    changed.

    ``connect``
      Makes a redis-py connection to the server the factory's client uses
      (``pool.make_connection``), not connected yet.
    ``prefix``
      The factory's key prefix: every key under it is tracked.
    ``size``
      The most entries kept.
    ``max_lag``
      Seconds: served only while a heartbeat sent that recently was
      answered.
    ``where``
      Names the server the client uses now (for Sentinel, the master's
      address); when its answer changes, the cache empties and connects
      again.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        prefix: str,
        size: int,
        max_lag: float,
        *,
        where: Callable[[], object] | None = None,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._size = size
        self._max_lag = max_lag
        self._where = where
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        """This process's state, made anew (also after a fork)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._conn: Any = None
        self._sock: socket.socket | None = None
        #: Whether ``_sock`` has anything to read (None: ask recv).
        self._readable: Callable[[], bool] | None = None
        self._server: object = None
        self._buffer = bytearray()
        self._pings: deque[float] = deque()
        self._last_ping = -float("inf")
        self._heard = -float("inf")
        self._fresh = False
        self._next_try = -float("inf")
        #: Bumped whenever the cache empties: older tokens put nothing.
        self._epoch = 0
        #: Keys being read (counted), and those changed while being read.
        self._reading: dict[str, int] = {}
        self._spoiled: set[str] = set()
        self._stats = dict.fromkeys(
            ("hits", "misses", "invalidations", "bypasses", "flushes", "connects"), 0
        )

    # -- what the session asks -------------------------------------------

    def _mine(self) -> None:
        """Start afresh in a forked child: the parent's socket and lock are
        never used there (nor closed: the parent still reads that socket)."""
        if os.getpid() != self._pid:
            self._reset()

    def get(self, key: str) -> Entry | None:
        """The entry of ``key``, if it is fresh and not past its deadline."""
        self._mine()
        with self._lock:
            if not self._poll():
                self._stats["bypasses"] += 1
                return None
            entry = self._entries.get(key)
            if entry is None:
                self._stats["misses"] += 1
                return None
            if time.time() >= entry.expires_at:
                del self._entries[key]
                self._stats["misses"] += 1
                return None
            self._entries.move_to_end(key)
            self._stats["hits"] += 1
            return entry

    def begin(self, key: str) -> int | None:
        """Before reading ``key`` from Redis: a token for :meth:`put`
        (``None``: the cache is not serving, keep nothing). Always pair it
        with :meth:`put` or :meth:`end`."""
        self._mine()
        with self._lock:
            if not self._fresh:
                return None
            self._reading[key] = self._reading.get(key, 0) + 1
            return self._epoch

    def put(self, key: str, token: int | None, entry: Entry) -> bool:
        """Keep what the read that :meth:`begin` gave ``token`` found;
        refused (false) if the key changed, or the cache emptied, since."""
        self._mine()
        if token is None:
            return False
        with self._lock:
            self._poll()
            kept = token == self._epoch and self._fresh and key not in self._spoiled
            self._end(key)
            if kept:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            return kept

    def end(self, key: str, token: int | None) -> None:
        """The read that :meth:`begin` gave ``token`` keeps nothing."""
        self._mine()
        if token is not None:
            with self._lock:
                self._end(key)

    def _end(self, key: str) -> None:
        left = self._reading.get(key, 0) - 1
        if left > 0:
            self._reading[key] = left
        else:
            self._reading.pop(key, None)
            self._spoiled.discard(key)

    def drop(self, key: str) -> None:
        """This process changed ``key``: forget it (and any read of it
        under way) without waiting for Redis to say so."""
        self._mine()
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self._entries.pop(key, None)
        if key in self._reading:
            self._spoiled.add(key)

    def clear(self) -> None:
        """Forget every entry, and every read under way."""
        self._mine()
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._entries.clear()
        self._epoch += 1
        self._spoiled.update(self._reading)

    def sync(self, timeout: float = 1.0) -> bool:
        """Wait until every change Redis made before now has been seen
        (a heartbeat sent now is answered); false on timeout. For tests
        and scripts that changed Redis by other means."""
        self._mine()
        deadline = time.monotonic() + timeout
        sent = time.monotonic()
        with self._lock:
            self._poll()
            if self._sock is None:
                return False
            self._send_ping(sent)
        while time.monotonic() < deadline:
            with self._lock:
                self._poll()
                if self._heard >= sent:
                    return True
            time.sleep(0.0005)
        return False

    def stats(self) -> dict[str, Any]:
        """Counts since the process started: ``hits``, ``misses``,
        ``invalidations`` (keys Redis said changed), ``bypasses`` (reads
        let through because the connection was not fresh), ``flushes``
        (times the cache emptied itself), ``connects``; and ``size``,
        ``fresh``."""
        self._mine()
        with self._lock:
            return {**self._stats, "size": len(self._entries), "fresh": self._fresh}

    def close(self) -> None:
        """Close the connection (in the process that opened it)."""
        with self._lock:
            if os.getpid() == self._pid:
                self._disconnect()
            self._clear()

    # -- the connection --------------------------------------------------

    def _poll(self) -> bool:
        """Read what arrived, send a heartbeat if due, connect if need be:
        whether the cache may serve now. Called with the lock held."""
        now = time.monotonic()
        if self._sock is None:
            if now < self._next_try:
                return False
            self._next_try = now + RETRY_INTERVAL
            self._open(now)
            if self._sock is None:
                return False
        if self._where is not None and self._where() != self._server:
            log.info("local cache: the server changed; emptied, connecting again")
            self._fail()
            return False
        try:
            self._receive()
        except (OSError, ValueError) as e:
            log.warning("local cache: the invalidation connection failed (%s)", e)
            self._fail()
            return False
        lag = self._max_lag
        if now - self._last_ping >= lag / 4 and len(self._pings) < _MAX_PINGS:
            self._send_ping(now)
        fresh = now - self._heard <= lag
        if (
            not fresh
            and self._sock is not None
            and self._pings
            and now - self._pings[0] <= lag
        ):
            # Only idle (every heartbeat answered until the last one, sent
            # just now): wait for that one, briefly, rather than empty a
            # cache that may well be fresh. A stalled connection has an
            # older heartbeat unanswered and is not waited for.
            try:
                fresh = self._revive()
            except (OSError, ValueError) as e:
                log.warning("local cache: the invalidation connection failed (%s)", e)
                self._fail()
                return False
        if not fresh and self._fresh:
            log.info(
                "local cache: no heartbeat answered in %ss; emptied", self._max_lag
            )
            self._flush()
        self._fresh = fresh
        return fresh

    def _revive(self) -> bool:
        """Wait for the heartbeat sent last, :data:`REVIVE_WAIT` at most:
        answered, every change made before it has been seen."""
        assert self._sock is not None and self._pings
        sent = self._pings[-1]
        deadline = time.monotonic() + min(self._max_lag, REVIVE_WAIT)
        while self._heard < sent:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self._sock], [], [], left)
            self._receive()
        return True

    def _open(self, now: float) -> None:
        conn = None
        try:
            server = self._where() if self._where is not None else None
            conn = self._connect()
            conn.connect()
            # redis-py's socket, once its handshake (TLS, AUTH, HELLO) is
            # done; from here on the cache speaks RESP itself, so that none
            # of this is a request's round trip.
            sock: socket.socket = conn._sock
            sock.sendall(_command(b"CLIENT", b"ID") + _command(b"ROLE"))
            client_id, role = self._read_blocking(sock, 2)
            if not isinstance(client_id, int):
                raise ValueError(f"CLIENT ID answered {client_id!r}")
            if self._where is not None and not (
                isinstance(role, list) and role and role[0] == b"master"
            ):
                # A master just demoted (Sentinel): its replicated writes
                # are no promise of invalidations. Retried later.
                raise ValueError("the server is not the master (yet)")
            sock.sendall(
                _command(
                    b"CLIENT",
                    b"TRACKING",
                    b"ON",
                    b"REDIRECT",
                    str(client_id).encode(),
                    b"BCAST",
                    b"PREFIX",
                    self._prefix.encode(),
                )
                + _command(b"SUBSCRIBE", CHANNEL)
                + _PING
            )
            replies = self._read_blocking(sock, 3)
            if isinstance(replies[0], Exception):
                raise replies[0]
            sock.setblocking(False)
        except Exception as e:  # any failure: no cache for now, retried later
            log.warning(
                "local cache: cannot set up tracking (%s); reads go to Redis", e
            )
            if conn is not None:
                conn.disconnect()
            return
        self._conn, self._sock, self._server = conn, sock, server
        self._readable = poller(sock.fileno())
        self._heard = self._last_ping = now
        self._pings.clear()
        self._fresh = True
        self._stats["connects"] += 1

    def _read_blocking(self, sock: socket.socket, count: int) -> list[Any]:
        replies: list[Any] = []
        while len(replies) < count:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
            pos = 0
            try:
                while len(replies) < count:
                    reply, pos = _parse(self._buffer, pos)
                    replies.append(reply)
            except _Incomplete:
                pass
            del self._buffer[:pos]
        return replies

    def _receive(self) -> None:
        sock = self._sock
        assert sock is not None
        if self._readable is not None and not self._readable():
            return  # nothing arrived: the common case, no recv
        while True:
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            if not chunk:
                raise ConnectionError("closed by the server")
            self._buffer += chunk
        if not self._buffer:
            return
        pos = 0
        try:
            while pos < len(self._buffer):
                message, pos = _parse(self._buffer, pos)
                self._handle(message)
        except _Incomplete:
            pass
        del self._buffer[:pos]

    def _handle(self, message: Any) -> None:
        # RESP2 (a subscriber's messages): ["message", channel, keys] and
        # ["pong", ""]; RESP3 (redis-py 8's default): pushes of
        # ["invalidate", keys], and "PONG". ``keys`` is null for a flush.
        if message == b"PONG":
            self._answered()
            return
        if not isinstance(message, list) or not message:
            return
        kind = message[0]
        if kind == b"message" and len(message) == 3 and message[1] == CHANNEL:
            self._invalidate(message[2])
        elif kind == b"invalidate" and len(message) == 2:
            self._invalidate(message[1])
        elif kind == b"pong":
            self._answered()

    def _answered(self) -> None:
        if self._pings:
            self._heard = self._pings.popleft()

    def _invalidate(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHDB, FLUSHALL, or the server dropped keys
            self._flush()
            return
        self._stats["invalidations"] += len(keys)
        for key in keys:
            self._drop(key.decode("utf-8", "surrogatepass"))

    def _send_ping(self, now: float) -> None:
        assert self._sock is not None
        try:
            self._sock.send(_PING)
        except (BlockingIOError, ssl.SSLWantWriteError):
            return
        except OSError:
            self._fail()
            return
        self._pings.append(now)
        self._last_ping = now

    def _flush(self) -> None:
        self._stats["flushes"] += 1
        self._clear()

    def _fail(self) -> None:
        self._disconnect()
        self._flush()
        self._fresh = False

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.disconnect()
        self._conn = self._sock = self._readable = None
        self._buffer.clear()
        self._pings.clear()
        self._heard = -float("inf")


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def local_cache_for(
    client: Any, prefix: str, size: int, max_lag: float
) -> LocalCache | None:
    """The local cache of a factory whose client is ``client``; ``None`` on
    Cluster, where one connection cannot hear every node (an INFO line
    says so)."""
    if isinstance(client, RedisCluster):
        log.info("local cache: off on Redis Cluster; every read goes to Redis")
        return None
    pool = client.connection_pool
    where = None
    proxy = getattr(pool, "proxy", None)  # a Sentinel pool: follow its master
    if proxy is not None and hasattr(proxy, "master_address"):
        follow = getattr(pool, "follow", None)

        def where() -> object:
            # Reads served from the cache check out no connection, which is
            # when the pool asks the sentinels again: ask here too (a
            # lookup in a thread, at most every FOLLOW_INTERVAL).
            if follow is not None:
                follow()
            return proxy.master_address

    def connect() -> Any:
        # Made apart from the pool (pool.make_connection would count it
        # against max_connections, and never get it back on a reconnect).
        return pool.connection_class(**pool.connection_kwargs)

    return LocalCache(connect, prefix, size, max_lag, where=where)
