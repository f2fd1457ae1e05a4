"""The Redis command layer: the only module that talks to Redis.

A session is one hash at ``prefix + session_id`` (see
:mod:`pyramid_redis_sessions.values`). Each public method of
:class:`RedisStore` is exactly one round trip, and every command or script
touches one key, so all of it is valid on Redis Cluster:

========================================  ==================================
``load(id, timeout, absolute, now)``      ``EVALSHA load``: the key's
                                          expiry set from the session's
                                          own timeout and deadline, then
                                          ``HGETALL``
``create(id, fields, ttl, replacing=…)``  ``EVALSHA write``, refusing an
                                          id that exists, with ``DEL`` of
                                          replaced keys in the same
                                          pipeline (on Cluster, sent to
                                          each key's node at once)
``save(id, fields, deleted, ttl)``        ``EVALSHA write``: the delta and
                                          the expiry, only if the session
                                          still exists
``delete(*ids)``                          ``DEL``
========================================  ==================================

The scripts run through redis-py's :class:`~redis.commands.core.Script`:
after a server restart (or ``SCRIPT FLUSH``) the first call also loads the
script, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgpack
import redis
import redis.exceptions
from redis.cluster import RedisCluster
from redis.commands.core import Script

from .client import Client, describe_server
from .exceptions import SessionStoreError, SessionStoreUnavailable
from .values import BadValue

__all__ = ["LOAD", "SCRIPTS", "WRITE", "RedisStore"]

# KEYS[1]: the session. ARGV: default timeout ('' for none), absolute
# timeout ('' for none), the time now. Slides the expiry from the session's
# own timeout and deadline (a session past its deadline is deleted), then
# returns HGETALL's flat list packed with the server's cmsgpack into one
# string ('' for no session): one bulk reply is parsed far faster than a
# hundred, whichever parser redis-py has. Reserved values are b'\2' +
# 16-byte tag + ASCII, so their number starts at byte 18. A hash without a
# creation time is not ours: returned untouched, for the application to
# reject. Whatever the script reads is verified by the application after.
LOAD = Script(
    None,  # type: ignore[arg-type]  # a bytes script needs no client's encoder
    b"""
local meta = redis.call('HMGET', KEYS[1], '\\255created', '\\255timeout')
if meta[1] then
  local ttl = tonumber(ARGV[1])
  if meta[2] then ttl = tonumber(string.sub(meta[2], 18)) end
  if ttl == 0 then ttl = nil end
  local absolute = tonumber(ARGV[2])
  if absolute then
    local created = tonumber(string.sub(meta[1], 18))
    local left = math.ceil(created + absolute - tonumber(ARGV[3]))
    if left <= 0 then
      redis.call('DEL', KEYS[1])
      return ''
    end
    if not ttl or left < ttl then ttl = left end
  end
  if ttl then
    redis.call('EXPIRE', KEYS[1], ttl)
  else
    redis.call('PERSIST', KEYS[1])
  end
end
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return '' end
return cmsgpack.pack(fields)
""",
)

# KEYS[1]: the session. ARGV: 'create' (refuse an existing key) or 'update'
# (refuse a missing one), the TTL ('' for none), the number N of fields
# set, N field/value pairs, then the fields to delete. Returns 1 if applied,
# 0 if refused (and then nothing changed).
WRITE = Script(
    None,  # type: ignore[arg-type]
    b"""
local exists = redis.call('EXISTS', KEYS[1]) == 1
if exists ~= (ARGV[1] == 'update') then return 0 end
local last = 3 + 2 * tonumber(ARGV[3])
for i = 4, last, 400 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 399, last)))
end
for i = last + 1, #ARGV, 400 do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
if ARGV[2] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
elseif exists then
  redis.call('PERSIST', KEYS[1])
end
return 1
""",
)

#: Every script the store runs (tests preload them for exact counts).
SCRIPTS = (LOAD, WRITE)


def _ttl_arg(ttl: int | None) -> int | str:
    return "" if ttl is None else ttl


class RedisStore:
    """Session hashes in Redis under ``prefix + session_id``."""

    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, session_id: str) -> str:
        return self.prefix + session_id

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Redis's errors as this package's, naming the server (for Cluster,
        the node of ``key``)."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            server = describe_server(self.client, key)
            raise SessionStoreUnavailable(
                f"session store Redis at {server} is unavailable: {e}", server=server
            ) from e
        except redis.exceptions.ResponseError as e:
            if "WRONGTYPE" in str(e):
                raise BadValue("the session key holds another Redis type") from e
            raise SessionStoreError(
                f"session store Redis at {describe_server(self.client, key)} "
                f"answered with an error: {e}"
            ) from e

    def load(
        self,
        session_id: str,
        timeout: int | None,
        absolute_timeout: int | None,
        now: float,
    ) -> dict[bytes, bytes]:
        """The session's fields and values (empty if there is none), its
        expiry slid to its own timeout and deadline."""
        key = self.key(session_id)
        args = (_ttl_arg(timeout), _ttl_arg(absolute_timeout), repr(now))
        with self._errors(key):
            packed: bytes = LOAD([key], args, self.client)
        if not packed:
            return {}
        try:
            strings = msgpack.unpackb(packed, raw=True)
            pairs = iter(strings)
            return dict(zip(pairs, pairs, strict=True))
        except (ValueError, TypeError) as e:  # msgpack's errors are ValueErrors
            raise BadValue("the load script's reply does not unpack") from e

    def create(
        self,
        session_id: str,
        fields: Sequence[bytes],
        ttl: int | None,
        replacing: Sequence[str] = (),
    ) -> bool:
        """Store a new session (``fields`` flat: name, value, …); false if
        ``session_id`` is taken.

        The keys of ``replacing`` (an invalidated or regenerated session) are
        deleted in the same round trip, one ``DEL`` each (they may live on
        other Cluster nodes).
        """
        key = self.key(session_id)
        args = ("create", _ttl_arg(ttl), len(fields) // 2, *fields)
        with self._errors(key):
            if not replacing:
                return bool(WRITE([key], args, self.client))
            # On Cluster the keys may live on different nodes: the pipeline
            # writes each node's commands before reading any reply, so the
            # DELs and the create still cost one round trip.
            pipe = self.client.pipeline(transaction=False)
            for old in replacing:
                pipe.delete(self.key(old))
            # Not WRITE(..., pipe): redis-py then asks SCRIPT EXISTS first,
            # an extra round trip on every call. Not pipe.evalsha(): a
            # Cluster pipeline refuses it by name (a script may name keys of
            # several slots), while EVALSHA of one key is routed to its node.
            pipe.execute_command("EVALSHA", WRITE.sha, 1, key, *args, **self._node(key))
            try:
                created = pipe.execute()[-1]
            except redis.exceptions.NoScriptError:
                # The DELs went through; the Script call loads and retries.
                created = WRITE([key], args, self.client)
            return bool(created)

    def _node(self, key: str) -> dict[str, Any]:
        """For a Cluster pipeline, the node of ``key`` named up front: left
        to itself, redis-py asks a server (``COMMAND GETKEYS``) where an
        ``EVALSHA`` goes, one more round trip. The node is where the client
        last saw the key's slot; a ``MOVED`` reply is followed as usual."""
        if not isinstance(self.client, RedisCluster):
            return {}
        try:
            node = self.client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisClusterException:  # the layout is unknown
            return {}
        return {"target_nodes": node}

    def save(
        self,
        session_id: str,
        fields: Sequence[bytes],
        deleted: Sequence[bytes],
        ttl: int | None,
    ) -> bool:
        """Apply a delta to an existing session: set ``fields`` (flat), delete
        ``deleted``, set the expiry. False, and nothing changed, if the
        session is gone."""
        key = self.key(session_id)
        args = ("update", _ttl_arg(ttl), len(fields) // 2, *fields, *deleted)
        with self._errors(key):
            return bool(WRITE([key], args, self.client))

    def delete(self, *session_ids: str) -> None:
        with self._errors():
            if len(session_ids) == 1:
                self.client.delete(self.key(session_ids[0]))
                return
            pipe = self.client.pipeline(transaction=False)
            for session_id in session_ids:
                pipe.delete(self.key(session_id))
            pipe.execute()
