"""The Redis command layer of the application: every command a request
sends goes through here (``psessions`` walks the store through
:mod:`pyramid_redis_sessions.admin` instead).

A session is one hash at ``prefix + session_id`` (see
:mod:`pyramid_redis_sessions.values`). Each public method of
:class:`RedisStore` is exactly one round trip, and every command or script
touches one key, so all of it is valid on Redis Cluster; the one exception
is ``move``, whose script touches two keys and is sent only outside
Cluster (on Cluster it is done in steps):

========================================  ==================================
``load(id, timeout, absolute, now)``      ``EVALSHA load``: ``HGETALL``,
                                          then the key's expiry set from
                                          the session's own timeout and
                                          deadline
``read(id)``                              ``HGETALL``: the hash as it is,
                                          its expiry left alone (the
                                          session slides it when due)
``fetch(id, verify, keep_until)``         ``read``, or nothing when the
                                          local cache holds the session
``create(id, fields, ttl, replacing=…)``  ``EVALSHA write``, refusing an
                                          id that exists, with ``DEL`` of
                                          replaced keys in the same
                                          pipeline (on Cluster, sent to
                                          each key's node at once)
``move(old_key, id, fields, ttl)``        ``EVALSHA move`` on both keys:
                                          the new session created only if
                                          the old one exists, then the old
                                          one deleted (on Cluster, see
                                          :meth:`RedisStore.move`: the
                                          create, then the ``DEL``)
``save(id, fields, deleted, ttl)``        ``EVALSHA write``: the delta and
                                          the expiry, only if the session
                                          still exists
``delete(*keys)``                         ``DEL``
``load_legacy(key)``                      ``GET`` and ``PTTL`` of a key
                                          that 1.x or pyramid_session_redis
                                          wrote, pipelined
``index_members(key)``                    ``ZRANGE … WITHSCORES`` of a
                                          user's index
``inspect(ids, fields)``                  ``PTTL`` and ``HMGET`` of each
                                          session, pipelined
``update_index(update)``                  ``EVALSHA index``
``update_indexes(updates)``               ``EVALSHA index`` then ``EXISTS``
                                          of each index, pipelined
``end(ids, field, accepted, index)``      ``EVALSHA end`` of each session
                                          and ``ZREM`` from the index,
                                          pipelined
========================================  ==================================

Every key a method writes or deletes leaves the process's local cache
(:mod:`pyramid_redis_sessions.localcache`), if the store has one, when the
method returns or fails.

``replacing`` of ``create`` and the keys of ``delete`` are whole keys, not
session ids: a legacy key carries its old package's prefix.

``create``, ``save`` and ``delete`` take the index updates of the user
sessions index (:mod:`pyramid_redis_sessions.users`), which then run in
the same pipeline: one round trip on a standalone server; on Cluster, where
the index lives in the user's own slot, one more node is asked in the same
pipeline. Without updates they send exactly what they sent before.

A pipeline never holds ``EVALSHA`` through redis-py's ``Script`` (which
would ask ``SCRIPT EXISTS`` first, an extra round trip on every call): a
script the server does not know is run again on its own, which loads it.

The scripts themselves, and the record's facts they use, are in
:mod:`pyramid_redis_sessions.scripts` (re-exported here).

Single script calls send ``EVALSHA`` themselves, and only fall back on
redis-py's :class:`~redis.commands.core.Script` when the server does not
know the script: after a server restart (or ``SCRIPT FLUSH``) the first
call also loads it, once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import redis
import redis.exceptions
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import RedisClusterException

from .client import Client, describe_server, error_code, is_transient
from .exceptions import SessionStoreError, SessionStoreUnavailable
from .localcache import Entry, LocalCache
from .scripts import (
    END,
    GONE,
    INDEX,
    LOAD,
    MOVE,
    MOVED,
    SCRIPTS,
    TAKEN,
    WRITE,
    IndexUpdate,
)
from .values import BadValue, Record

__all__ = [
    "END",
    "GONE",
    "INDEX",
    "LOAD",
    "MOVE",
    "MOVED",
    "SCRIPTS",
    "TAKEN",
    "WRITE",
    "IndexUpdate",
    "RedisStore",
]


@dataclass(frozen=True)
class _Call:
    """One command of a pipeline: a script, or a plain command."""

    args: tuple[Any, ...]
    script: Script | None = None
    keys: tuple[str, ...] = ()


class _Errors:
    """``with``: Redis's errors as this package's (see
    :meth:`RedisStore._errors`), by the error code of the reply (its first
    word; inside a pipeline the same exception objects, as replies): one
    that passes (:func:`~pyramid_redis_sessions.client.is_transient`, a
    connection error or a timeout too) is ``SessionStoreUnavailable``,
    ``WRONGTYPE`` a bad value, any other ``SessionStoreError``. A class, not
    ``@contextmanager``: it wraps every round trip, and a generator-based
    one costs ~1.5 µs more each."""

    __slots__ = ("client", "key")

    def __init__(self, client: Client, key: str | None) -> None:
        self.client = client
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, e: Any, traceback: Any) -> None:
        if e is None:
            return
        if isinstance(e, SessionStoreError) or not isinstance(
            e, (redis.exceptions.RedisError, RedisClusterException)
        ):
            return  # ours already, or not redis-py's
        if is_transient(e):
            server = describe_server(self.client, self.key)
            raise SessionStoreUnavailable(
                f"session store Redis at {server} is unavailable: {e}", server=server
            ) from e
        if error_code(e) == "WRONGTYPE":
            raise BadValue("the session key holds another Redis type") from e
        raise SessionStoreError(
            f"session store Redis at {describe_server(self.client, self.key)} "
            f"answered with an error: {e}"
        ) from e


def _ttl_arg(ttl: int | None) -> int | str:
    return "" if ttl is None else ttl


class RedisStore:
    """Session hashes in Redis under ``prefix + session_id``."""

    def __init__(
        self, client: Client, prefix: str, cache: LocalCache | None = None
    ) -> None:
        self.client = client
        self.prefix = prefix
        #: The process's local cache of these sessions, if it has one: every
        #: key this store writes or deletes is dropped from it.
        self.cache = cache

    def key(self, session_id: str) -> str:
        return self.prefix + session_id

    @contextlib.contextmanager
    def _forgetting(self, *keys: str) -> Iterator[None]:
        """Around a write of ``keys``: they leave the local cache once it is
        done (or failed: it may have been applied all the same)."""
        try:
            yield
        finally:
            if self.cache is not None:
                for key in keys:
                    self.cache.drop(key)

    def _errors(self, key: str | None = None) -> _Errors:
        """Redis's errors as this package's, naming the server (for Cluster,
        the node of ``key``)."""
        return _Errors(self.client, key)

    def _evalsha(self, script: Script, key: str, args: Sequence[Any]) -> Any:
        """``EVALSHA`` of ``script`` on ``key``, straight through
        ``execute_command``: redis-py's ``Script.__call__`` costs ~2 µs more
        per call. A script the server does not know (after a restart) is run
        through ``Script``, which loads it."""
        try:
            return self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, 1, key, *args
            )
        except redis.exceptions.NoScriptError:
            return script([key], args, self.client)

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
            packed: bytes = self._evalsha(LOAD, key, args)
        if not packed:
            return {}
        try:
            strings = msgpack.unpackb(packed, raw=True)
            pairs = iter(strings)
            return dict(zip(pairs, pairs, strict=True))
        except (ValueError, TypeError) as e:  # msgpack's errors are ValueErrors
            raise BadValue("the load script's reply does not unpack") from e

    def read(self, session_id: str) -> dict[bytes, bytes]:
        """The session's fields and values (empty if there is none), as
        they are: a bare ``HGETALL``, its expiry left alone."""
        key = self.key(session_id)
        with self._errors(key):
            fields: dict[bytes, bytes] = self.client.hgetall(key)  # type: ignore[assignment]
        return fields

    def fetch(
        self,
        session_id: str,
        verify: Callable[[dict[bytes, bytes]], Record],
        keep_until: Callable[[Record], float],
    ) -> tuple[dict[bytes, bytes], Record | None, bool]:
        """The session's hash, what ``verify`` found in it (``({}, None)``
        if there is none) and whether the local cache held it (no round
        trip; else :meth:`read`, one). ``verify`` checks a hash read from
        Redis (raising :class:`BadValue`); what it found is then kept in the
        cache until ``keep_until`` of it, unless the key changed meanwhile."""
        cache = self.cache
        if cache is None:
            stored = self.read(session_id)
            return (stored, verify(stored), False) if stored else ({}, None, False)
        key = self.key(session_id)
        entry = cache.get(key)
        if entry is not None:
            return entry.stored, entry.record, True
        token = cache.begin(key)
        try:
            stored = self.read(session_id)
            if not stored:
                return {}, None, False
            record = verify(stored)
            cache.put(key, token, Entry(stored, record, keep_until(record)))
            token = None
            return stored, record, False
        finally:
            cache.end(key, token)

    def create(
        self,
        session_id: str,
        fields: Sequence[bytes],
        ttl: int | None,
        replacing: Sequence[str] = (),
        *,
        index: Sequence[IndexUpdate] = (),
    ) -> bool:
        """Store a new session (``fields`` flat: name, value, …); false if
        ``session_id`` is taken.

        The keys ``replacing`` (an invalidated or regenerated session's, a
        legacy session's moved here) are deleted in the same round trip, one
        ``DEL`` each (they may live on other Cluster nodes).
        """
        key = self.key(session_id)
        args = ("create", _ttl_arg(ttl), len(fields) // 2, *fields)
        with self._errors(key), self._forgetting(key, *replacing):
            if not replacing and not index:
                return bool(self._evalsha(WRITE, key, args))
            calls = [
                *(_Call(("DEL", old)) for old in replacing),
                _Call(args, WRITE, (key,)),
            ]
            return bool(self._with_index(calls, index)[-1])

    def move(
        self,
        old_key: str,
        session_id: str,
        fields: Sequence[bytes],
        ttl: int | None,
        *,
        index: Sequence[IndexUpdate] = (),
    ) -> int:
        """Move a session to ``session_id`` (``fields`` flat, sealed for the
        new id, the creation time first): claimed, then committed. The new
        session is created only if ``old_key`` (a whole key) still exists,
        and ``old_key`` is deleted only once the new session exists; the
        ``index`` updates are applied only with the move. :data:`MOVED`,
        :data:`TAKEN` (``session_id`` is in use: nothing changed) or
        :data:`GONE` (the old session ended meanwhile: nothing is kept).

        On a standalone server or under Sentinel, one round trip: the
        ``MOVE`` script does it all atomically. On Cluster, where the two
        keys may live on two nodes, two: the new key is created (refusing
        an id in use) with the index additions, then the old key is
        deleted; if that ``DEL`` finds nothing, the new key is deleted
        again (one more round trip, with its index entry). Then, only for
        a bound session, the old id's index entry is removed. An error
        while creating changes nothing that is not recovered (a key created
        all the same is unreachable: its id was never sent); an error while
        deleting the old key deletes the new one again, best effort, and is
        raised: the old session stays the user's.
        """
        key = self.key(session_id)
        if isinstance(self.client, RedisCluster):
            with self._forgetting(old_key, key):
                return self._move_on_cluster(old_key, key, fields, ttl, index)
        now = time.time()
        args: list[Any] = [_ttl_arg(ttl), len(fields) // 2, *fields]
        for update in index:
            update_args = update.args(now)
            args += [len(update_args), *update_args]
        keys = (old_key, key, *(update.key for update in index))
        with self._errors(key), self._forgetting(old_key, key):
            try:
                reply = self.client.execute_command(  # type: ignore[no-untyped-call]
                    "EVALSHA", MOVE.sha, len(keys), *keys, *args
                )
            except redis.exceptions.NoScriptError:
                reply = MOVE(list(keys), args, self.client)
        status = int(reply[0])
        for update, suspects in zip(index, reply[1:], strict=False):
            update.suspects = [m.decode("utf-8", "surrogatepass") for m in suspects]
        return status

    def _move_on_cluster(
        self,
        old_key: str,
        key: str,
        fields: Sequence[bytes],
        ttl: int | None,
        index: Sequence[IndexUpdate],
    ) -> int:
        adds = {
            u.key: IndexUpdate(u.key, add=u.add, deadlines=u.deadlines)
            for u in index
            if u.add
        }
        args = ("create", _ttl_arg(ttl), len(fields) // 2, *fields)
        with self._errors(key):
            # The index first: whenever the old session is gone, the new
            # one is already listed, so end_all() can find it.
            calls = [_Call(args, WRITE, (key,))]
            created = bool(self._with_index(calls, list(adds.values()))[0])
        for update in index:
            if update.key in adds:
                update.suspects = adds[update.key].suspects
        if not created:
            return TAKEN
        try:
            with self._errors(old_key):
                deleted = self.client.delete(old_key)
        except SessionStoreError:
            # Unknown whether the old key went: keep it the session, the
            # safe side (rather than two live ids, the old one planted
            # maybe). Best effort: the error raised is the DEL's.
            with contextlib.suppress(redis.exceptions.RedisError):
                self._drop_new(key, adds.values())
            raise
        if not deleted:
            # Ended meanwhile (a logout, end_all(), expiry, another move):
            # the copy must not outlive it.
            with self._errors(key):
                self._drop_new(key, adds.values())
            return GONE
        for update in index:
            removes = update.remove
            if removes:
                # The move is committed: the old id's entry goes. Should
                # this fail, pruning removes it later (its key is gone).
                done = IndexUpdate(
                    update.key, remove=removes, deadlines=update.deadlines
                )
                with contextlib.suppress(redis.exceptions.RedisError):
                    self._with_index([], [done])
                update.suspects = sorted({*update.suspects, *done.suspects})
        return MOVED

    def _drop_new(self, key: str, adds: Iterable[IndexUpdate]) -> None:
        """Delete a key that a move created but did not commit, with its
        index entries, in one round trip. Should the ``DEL`` fail and the
        index update not, the key is left unlisted, but unreachable too:
        its id was never sent."""
        removes = [
            IndexUpdate(u.key, remove=[m for m, _ in u.add], deadlines=u.deadlines)
            for u in adds
        ]
        self._with_index([_Call(("DEL", key))], removes)

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
        index: Sequence[IndexUpdate] = (),
    ) -> bool:
        """Apply a delta to an existing session: set ``fields`` (flat), delete
        ``deleted``, set the expiry. False, and nothing changed, if the
        session is gone. The ``index`` updates go in the same round trip
        (and are applied either way: the index is checked when read)."""
        key = self.key(session_id)
        args = ("update", _ttl_arg(ttl), len(fields) // 2, *fields, *deleted)
        with self._errors(key), self._forgetting(key):
            if not index:
                return bool(self._evalsha(WRITE, key, args))
            return bool(self._with_index([_Call(args, WRITE, (key,))], index)[0])

    def delete(
        self,
        *keys: str,
        index: Sequence[IndexUpdate] = (),
    ) -> None:
        """Delete ``keys`` (whole keys: a session's is :meth:`key` of its id)
        and apply ``index`` updates, in one round trip."""
        with self._errors(), self._forgetting(*keys):
            if len(keys) == 1 and not index:
                self.client.delete(keys[0])
                return
            self._with_index([_Call(("DEL", key)) for key in keys], index)

    def load_legacy(self, key: str) -> tuple[bytes | None, int | None]:
        """The bytes at ``key``, a whole key that 1.x or
        pyramid_session_redis wrote (``None`` if it is gone), and its
        remaining lifetime in whole seconds, rounded down but at least 1
        (``None`` for no expiry).

        The value is an unsigned pickle: read only a key that a legacy cookie
        named and that verified with the secret.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.get(key)
        pipe.pttl(key)
        with self._errors(key):
            raw, pttl = pipe.execute()
        if raw is None:
            return None, None
        # Whole seconds for EXPIRE, rounded down so the new key does not
        # outlive the old one, but at least one so that it is created at all.
        return raw, (max(1, pttl // 1000) if pttl >= 0 else None)

    # -- the user sessions index ------------------------------------------

    def index_members(self, key: str) -> list[tuple[str, float]]:
        """The members of a user's index with their scores."""
        with self._errors(key):
            pairs: list[tuple[bytes, float]] = self.client.zrange(  # type: ignore[assignment]
                key, 0, -1, withscores=True
            )
        return [
            (member.decode("utf-8", "surrogatepass"), score) for member, score in pairs
        ]

    def update_index(self, update: IndexUpdate) -> list[str]:
        """Apply ``update`` and prune; the suspects (see ``INDEX``)."""
        with self._errors(update.key):
            self._with_index([], [update])
        return update.suspects

    def update_indexes(self, updates: Sequence[IndexUpdate]) -> list[bool]:
        """:meth:`update_index` of each of ``updates``, in one round trip;
        whether each index is still there (``EXISTS`` after its script)."""
        now = time.time()
        calls: list[_Call] = []
        for u in updates:
            exists = _Call(("EXISTS", u.key))
            calls += [_Call(tuple(u.args(now)), INDEX, (u.key,)), exists]
        with self._errors(updates[0].key if updates else None):
            results = self._pipeline(calls)
        # A script run again after a flush runs after its EXISTS, unseen.
        return [bool(exists) for exists in results[1::2]]

    def inspect(
        self, session_ids: Sequence[str], fields: Sequence[bytes]
    ) -> list[tuple[int, list[bytes | None]]]:
        """Each session's ``PTTL`` in milliseconds (``-2``: gone, ``-1``: no
        expiry) and the values of ``fields`` (none: no ``HMGET``), in one
        round trip (on Cluster, one per node, in parallel)."""
        calls: list[_Call] = []
        for session_id in session_ids:
            key = self.key(session_id)
            calls.append(_Call(("PTTL", key)))
            if fields:
                calls.append(_Call(("HMGET", key, *fields)))
        with self._errors():
            results = self._pipeline(calls)
        replies = iter(results)  # each PTTL, then its HMGET if any
        return [(int(ttl), list(next(replies)) if fields else []) for ttl in replies]

    def end(
        self,
        session_ids: Sequence[str],
        field: bytes,
        accepted: Sequence[Sequence[bytes]],
        index: IndexUpdate,
    ) -> list[bool]:
        """Delete each session whose ``field`` holds one of its ``accepted``
        values, and apply ``index`` (removing them), in one round trip.
        Whether each session was deleted."""
        calls = [
            _Call((field, *values), END, (self.key(session_id),))
            for session_id, values in zip(session_ids, accepted, strict=True)
        ]
        keys = [self.key(session_id) for session_id in session_ids]
        with self._errors(index.key), self._forgetting(*keys):
            results = self._with_index(calls, [index])
        return [bool(r) for r in results]

    # -- pipelines -----------------------------------------------------------

    def _with_index(
        self, calls: Sequence[_Call], updates: Sequence[IndexUpdate]
    ) -> list[Any]:
        """Run ``calls`` and the index ``updates`` in one pipeline; the
        replies of ``calls``. Each update gets its suspects (see ``INDEX``)."""
        now = time.time()
        index = [_Call(tuple(u.args(now)), INDEX, (u.key,)) for u in updates]
        results = self._pipeline([*calls, *index])
        for update, suspects in zip(updates, results[len(calls) :], strict=True):
            update.suspects = [m.decode("utf-8", "surrogatepass") for m in suspects]
        return results[: len(calls)]

    def _pipeline(self, calls: Sequence[_Call]) -> list[Any]:
        """Send ``calls`` in one pipeline; their replies. A script the server
        did not know (after a restart) is run again on its own, which loads
        it; any other error is raised."""
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            if call.script is None:
                pipe.execute_command(*call.args)
            else:
                # Through execute_command: redis-py's ClusterPipeline blocks
                # its evalsha() method (a script may name keys of several
                # slots); EVALSHA of one key, its node named up front, goes
                # straight there. On Cluster the pipeline writes each node's
                # commands before reading any reply: still one round trip.
                pipe.execute_command(
                    "EVALSHA",
                    call.script.sha,
                    len(call.keys),
                    *call.keys,
                    *call.args,
                    **self._node(call.keys[0]),
                )
        results: list[Any] = pipe.execute(raise_on_error=False)
        for i, (call, result) in enumerate(zip(calls, results, strict=True)):
            if isinstance(result, redis.exceptions.NoScriptError) and call.script:
                results[i] = call.script(list(call.keys), list(call.args), self.client)
            elif isinstance(result, Exception):
                raise result
        return results
