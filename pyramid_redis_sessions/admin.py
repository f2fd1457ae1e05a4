"""The operator's view of the session store: what ``psessions`` asks of Redis.

The application's own commands live in :mod:`pyramid_redis_sessions.store`
and each touch one session. These walk the whole store, so they are built
to stay cheap however many sessions there are:

* Keys are found with ``SCAN`` (``MATCH prefix*``, ``TYPE hash``, ``COUNT``
  of the batch size), never ``KEYS``: the server is never blocked, and this
  process holds one batch of keys at a time. On Redis Cluster every master
  is scanned in turn, through a client of that node.
* What each batch needs (``TTL``, ``UNLINK``) is one pipeline per batch:
  one round trip for up to ``batch_size`` keys.
* The user-sessions indexes are found the same way (``MATCH prefix +
  "user:{*"``, ``TYPE zset``), and their entries past their score read
  with one pipelined ``ZRANGEBYSCORE`` per batch, for ``psessions sweep``
  (:meth:`Keyspace.index_suspects`).
* Memory is measured with ``MEMORY USAGE`` on a uniform random sample
  (reservoir sampling, so the sample, not the key list, is what is held)
  and extrapolated to the count.
* Reading a session here (:meth:`Keyspace.read`) is ``HGETALL`` and
  ``TTL``: unlike the application's load, it does not slide the expiry.
* A session named by its handle is found by walking the keys
  (:meth:`Keyspace.find`): the handle of each id is computed here.

Which keys are sessions
-----------------------

A key is a session when, and only when:

1. it starts with the ``prefix`` setting (``SCAN MATCH``, with the glob
   characters of the prefix escaped);
2. it holds a Redis hash (``SCAN TYPE hash``): values of other types under
   the prefix are not sessions of this format and are neither counted nor
   deleted with them;
3. the rest of the key (the session id) is not empty and does not start
   with one of :data:`RESERVED_NAMESPACES`, the names this package keeps
   under the prefix for its own structures (the user-sessions index).

Strings under the prefix (rules 1 and 3, ``SCAN TYPE string``) are what
1.x and pyramid_session_redis stored: sessions not moved to this format
yet, which the application still accepts while ``legacy_cookies`` is on.
They are counted on their own (:meth:`Keyspace.count_legacy`) and deleted
only when asked (:meth:`Keyspace.purge_legacy`): this package never reads
them here, so it cannot tell them from other strings an application keeps
under the same prefix.
"""

from __future__ import annotations

import heapq
import hmac
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import RedisCluster

from .client import Client, describe_server
from .handles import Handles

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SAMPLE_SIZE",
    "RESERVED_NAMESPACES",
    "TTL_BUCKETS",
    "Keyspace",
    "Node",
    "SampledSession",
    "StoreStats",
    "StoredSession",
    "TTLBucket",
]

#: Keys per ``SCAN`` call and per pipeline.
DEFAULT_BATCH_SIZE = 500
#: Sessions whose memory is measured by ``stats``.
DEFAULT_SAMPLE_SIZE = 1000

#: Namespaces under the prefix that hold this package's own keys, never
#: sessions: ``prefix + "user:"`` is the user-sessions index. Session ids
#: from the default generator never contain ``:``.
RESERVED_NAMESPACES: tuple[str, ...] = ("user:",)

#: The TTL histogram's buckets: a label and the largest TTL in seconds it
#: holds (each bucket holds TTLs above the previous bound, up to and
#: including its own; ``None``: no bound). Keys without an expiry have a
#: bucket of their own, first.
TTL_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("0-1 min", 60),
    ("1-5 min", 5 * 60),
    ("5-20 min", 20 * 60),
    ("20-60 min", 60 * 60),
    ("1-6 h", 6 * 3600),
    ("6-24 h", 24 * 3600),
    ("1-7 d", 7 * 86400),
    ("> 7 d", None),
)
NO_EXPIRY = "no expiry"


def _glob_escape(text: str) -> str:
    for char in "\\*?[]^":
        text = text.replace(char, "\\" + char)
    return text


@dataclass(frozen=True)
class Node:
    """A server that holds sessions: the standalone (or Sentinel) master, or
    one Cluster master."""

    name: str
    client: redis.Redis
    #: Multi-key commands must not mix Cluster slots, so keys are deleted
    #: one per command (all of a batch in one pipeline).
    cluster: bool = False


@dataclass
class TTLBucket:
    label: str
    #: Largest TTL in the bucket, seconds; ``None``: no bound (or, for the
    #: ``no expiry`` bucket, no TTL at all).
    up_to: int | None
    count: int = 0


@dataclass(frozen=True)
class SampledSession:
    """One session of the memory sample."""

    handle: str
    bytes: int
    fields: int


@dataclass
class StoreStats:
    """What :meth:`Keyspace.stats` found."""

    nodes: list[str]
    #: Live sessions (keys that vanished during the scan are not counted).
    sessions: int = 0
    ttl: list[TTLBucket] = field(
        default_factory=lambda: [
            TTLBucket(NO_EXPIRY, None),
            *(TTLBucket(label, up_to) for label, up_to in TTL_BUCKETS),
        ]
    )
    #: Sessions whose ``MEMORY USAGE`` was measured, and their total bytes.
    sampled: int = 0
    sampled_bytes: int = 0
    #: The largest sessions of the sample, largest first.
    largest: list[SampledSession] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Every session was measured: the memory figure is not an estimate."""
        return self.sampled == self.sessions

    @property
    def mean_bytes(self) -> float:
        return self.sampled_bytes / self.sampled if self.sampled else 0.0

    @property
    def memory_bytes(self) -> int:
        """Sessions times the sample's mean: an estimate unless :attr:`exact`."""
        return round(self.mean_bytes * self.sessions)

    def count_ttl(self, ttl: int) -> None:
        if ttl < 0:
            self.ttl[0].count += 1
            return
        for bucket in self.ttl[1:]:
            if bucket.up_to is None or ttl <= bucket.up_to:
                bucket.count += 1
                return


@dataclass(frozen=True)
class StoredSession:
    """One session's raw hash, read without touching its expiry."""

    #: The Redis type of the key: ``"hash"`` for a session of this format,
    #: ``"none"`` when there is no such key.
    type: str
    #: Seconds left; ``None`` when the key has no expiry (or does not exist).
    ttl: int | None
    fields: dict[bytes, bytes]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Keyspace:
    """The sessions under ``prefix`` in the store ``client`` reaches.

    ``client``
      The factory's client: standalone, Sentinel (its master) or Cluster.

    ``prefix``
      The ``prefix`` setting.

    ``batch_size``
      Keys per ``SCAN`` (its ``COUNT``) and per pipeline; no step handles
      more keys than that at once. Default: :data:`DEFAULT_BATCH_SIZE`.
    """

    def __init__(
        self, client: Client, prefix: str, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.client = client
        self.prefix = prefix
        self.batch_size = batch_size
        self._prefix_bytes = prefix.encode("utf-8")
        self._reserved = tuple(
            self._prefix_bytes + name.encode() for name in RESERVED_NAMESPACES
        )

    def describe(self) -> str:
        """The server(s), as error messages name them."""
        return describe_server(self.client)

    def nodes(self) -> list[Node]:
        """The servers to scan: every Cluster master, or the one server."""
        if isinstance(self.client, RedisCluster):
            return [
                Node(node.name, self.client.get_redis_connection(node), cluster=True)
                for node in self.client.get_primaries()  # type: ignore[no-untyped-call]
            ]
        return [Node(self.describe(), self.client)]

    def is_session_key(self, key: bytes) -> bool:
        """Rules 1 and 3 of the module docstring (``SCAN`` applies rule 2)."""
        return (
            key.startswith(self._prefix_bytes)
            and len(key) > len(self._prefix_bytes)
            and not key.startswith(self._reserved)
        )

    def session_id(self, key: bytes) -> str:
        return key[len(self._prefix_bytes) :].decode("utf-8", "surrogateescape")

    def batches(self, kind: str = "hash") -> Iterator[tuple[Node, list[bytes]]]:
        """Session keys (``kind`` ``string``: legacy ones), node by node, at
        most ``batch_size`` at a time.

        ``SCAN`` returns each key present for the whole scan at least once;
        a key may come twice (after a rehash), and keys created or deleted
        meanwhile may or may not come.
        """
        pattern = _glob_escape(self.prefix) + "*"
        return self._scan(pattern, kind, self.is_session_key)

    def index_batches(self) -> Iterator[tuple[Node, list[bytes]]]:
        """The keys of the user-sessions indexes under the prefix
        (``MATCH prefix + "user:{*"``, ``TYPE zset``), node by node, at most
        ``batch_size`` at a time, as :meth:`batches` finds sessions."""
        pattern = _glob_escape(self.prefix) + "user:{*"
        return self._scan(pattern, "zset", lambda key: True)

    def _scan(
        self, pattern: str, kind: str, accept: Callable[[bytes], bool]
    ) -> Iterator[tuple[Node, list[bytes]]]:
        size = self.batch_size
        for node in self.nodes():
            cursor = 0
            while True:
                cursor, found = node.client.scan(
                    cursor, match=pattern, count=size, _type=kind
                )
                keys = [
                    key if isinstance(key, bytes) else key.encode("utf-8")
                    for key in found
                ]
                keys = [key for key in keys if accept(key)]
                # COUNT is a hint: a reply may hold a few more keys.
                for start in range(0, len(keys), size):
                    yield node, keys[start : start + size]
                if cursor == 0:
                    break

    def index_suspects(
        self, node: Node, keys: Sequence[bytes], now: float
    ) -> Iterator[dict[str, list[tuple[str, float]]]]:
        """The entries of the indexes ``keys`` (a batch of
        :meth:`index_batches` from ``node``) whose score is ``now`` or less,
        by index key: ``ZRANGEBYSCORE`` of each, one pipeline, at most
        ``batch_size`` entries of each index (the oldest; the rest are for
        the next sweep), given in chunks of at most ``batch_size`` entries
        in all."""
        keys = list(dict.fromkeys(keys))  # SCAN may give a key twice
        pipe = node.client.pipeline(transaction=False)
        for key in keys:
            pipe.zrangebyscore(
                key, "-inf", now, start=0, num=self.batch_size, withscores=True
            )
        chunk: dict[str, list[tuple[str, float]]] = {}
        held = 0
        for key, entries in zip(keys, pipe.execute(), strict=True):
            for member, score in entries:
                if held == self.batch_size:
                    yield chunk
                    chunk, held = {}, 0
                chunk.setdefault(key.decode(), []).append(
                    (member.decode("utf-8", "surrogatepass"), score)
                )
                held += 1
        if chunk:
            yield chunk

    def stats(
        self,
        handles: Handles,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        largest: int = 10,
        rng: random.Random | None = None,
    ) -> StoreStats:
        """Count the sessions and their TTLs (one ``TTL`` per session, a
        pipeline per batch), and measure a uniform sample of ``sample_size``
        of them with ``MEMORY USAGE`` and ``HLEN``."""
        rng = rng or random.Random()
        found = StoreStats(nodes=[node.name for node in self.nodes()])
        # Reservoir sampling: the sample is uniform over every session seen,
        # and only the sample is kept.
        sample: list[tuple[Node, bytes]] = []
        for node, keys in self.batches():
            pipe = node.client.pipeline(transaction=False)
            for key in keys:
                pipe.ttl(key)
            for key, ttl in zip(keys, pipe.execute(), strict=True):
                if ttl == -2:  # expired or deleted since the SCAN
                    continue
                found.sessions += 1
                found.count_ttl(ttl)
                if len(sample) < sample_size:
                    sample.append((node, key))
                else:
                    slot = rng.randrange(found.sessions)
                    if slot < sample_size:
                        sample[slot] = (node, key)
        self._measure(found, sample, handles, largest)
        return found

    def _measure(
        self,
        found: StoreStats,
        sample: list[tuple[Node, bytes]],
        handles: Handles,
        largest: int,
    ) -> None:
        by_node: dict[str, list[tuple[Node, bytes]]] = {}
        for node, key in sample:
            by_node.setdefault(node.name, []).append((node, key))
        top: list[tuple[int, str, SampledSession]] = []
        for entries in by_node.values():
            for start in range(0, len(entries), self.batch_size):
                chunk = entries[start : start + self.batch_size]
                pipe = chunk[0][0].client.pipeline(transaction=False)
                for _, key in chunk:
                    pipe.memory_usage(key)
                    pipe.hlen(key)
                replies = pipe.execute()
                for index, (_, key) in enumerate(chunk):
                    size, fields = replies[2 * index], replies[2 * index + 1]
                    if size is None:  # gone since it was counted
                        continue
                    found.sampled += 1
                    found.sampled_bytes += size
                    handle = handles(self.session_id(key))
                    entry = (size, handle, SampledSession(handle, size, fields))
                    if len(top) < largest:
                        heapq.heappush(top, entry)
                    elif largest:
                        heapq.heappushpop(top, entry)
        # A session that vanished after it was counted leaves the count
        # one higher than the sample; the sample is still uniform.
        found.largest = [entry[2] for entry in sorted(top, reverse=True)]

    def find(self, handles: Handles, handle: str) -> list[str]:
        """The ids of the sessions whose handle is ``handle`` (one, or none):
        the keys come from :meth:`batches` and the handles are computed
        here, so nothing but ``SCAN`` is sent. A handle cannot be turned
        back into an id: this is the only way from one to its session."""
        found = {
            session_id
            for _, keys in self.batches()
            for session_id in map(self.session_id, keys)
            if hmac.compare_digest(handles(session_id), handle)
        }
        return sorted(found)  # a set: SCAN may return a key twice

    def count_legacy(self) -> int:
        """How many strings are under the prefix: sessions that 1.x or
        pyramid_session_redis stored and that were not moved yet."""
        return sum(len(keys) for _, keys in self.batches("string"))

    def purge(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete every session with ``UNLINK`` (the memory is freed in the
        background), one pipeline per batch; ``progress`` is called with
        the running total after each batch. Returns how many were deleted."""
        return self._unlink_all("hash", progress)

    def purge_legacy(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete every string under the prefix (the legacy sessions), as
        :meth:`purge` deletes sessions."""
        return self._unlink_all("string", progress)

    def _unlink_all(self, kind: str, progress: Callable[[int], None] | None) -> int:
        total = 0
        for node, keys in self.batches(kind):
            if node.cluster:
                pipe = node.client.pipeline(transaction=False)
                for key in keys:
                    pipe.unlink(key)
                total += sum(pipe.execute())
            else:
                total += node.client.unlink(*keys)
            if progress is not None:
                progress(total)
        return total

    def read(self, key: str) -> StoredSession:
        """The key's type, TTL and (for a hash) fields, in one round trip,
        its expiry untouched."""
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.type(key)
        pipe.ttl(key)
        pipe.hgetall(key)
        kind, ttl, fields = pipe.execute(raise_on_error=False)
        kind = _text(kind)
        if kind != "hash":
            fields = {}
        elif isinstance(fields, Exception):  # changed type since TYPE
            raise fields
        return StoredSession(kind, ttl if ttl >= 0 else None, fields)

    def read_string(self, key: str) -> tuple[bytes | None, int | None]:
        """A string key's value (``None`` if there is no string there) and
        TTL: how 1.x and pyramid_session_redis stored sessions."""
        pipe: Any = self.client.pipeline(transaction=False)
        pipe.type(key)
        pipe.ttl(key)
        pipe.get(key)
        kind, ttl, value = pipe.execute(raise_on_error=False)
        if _text(kind) != "string" or isinstance(value, Exception):
            return None, None
        return value, (ttl if ttl >= 0 else None)
