"""An in-memory store with :class:`~pyramid_redis_sessions.store.RedisStore`'s
interface, for unit tests of the session's own logic (its dict, flash
queues, change detection) that need no server.

It keeps what the store's scripts keep, the way they keep it (hashes,
expiries, sorted-set indexes, ``create`` refusing an id in use, ``save``
refusing an ended session), and counts its calls: one call is one round
trip of the real store. ``tests/test_memory_store.py`` runs the same
sequences against it and against a real server, so that the two cannot
drift apart. It is never used instead of the real-server tests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from pyramid_redis_sessions.store import GONE, MOVED, TAKEN, IndexUpdate
from pyramid_redis_sessions.values import (
    CREATED,
    HEADER_SIZE,
    TIMEOUT,
    BadValue,
    parse_created,
    parse_timeout,
)


class MemoryStore:
    """Sessions in a dict, by whole key; expiries by ``clock``."""

    def __init__(
        self, prefix: str = "session:", clock: Callable[[], float] = time.time
    ):
        self.prefix = prefix
        self.clock = clock
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.strings: dict[str, bytes] = {}
        self.indexes: dict[str, dict[str, float]] = {}
        self.expiry: dict[str, float] = {}  # key: deadline, by clock
        #: The methods called, in order: each one is a round trip of RedisStore.
        self.calls: list[str] = []
        #: No local cache: it needs a server to keep it fresh.
        self.cache = None

    # -- keys ------------------------------------------------------------------

    def key(self, session_id: str) -> str:
        return self.prefix + session_id

    def _live(self, key: str) -> bool:
        deadline = self.expiry.get(key)
        if deadline is not None and deadline <= self.clock():
            self._drop(key)
        return key in self.hashes or key in self.strings or key in self.indexes

    def _drop(self, key: str) -> None:
        for table in (self.hashes, self.strings, self.indexes, self.expiry):
            table.pop(key, None)

    def _expire(self, key: str, ttl: int | None) -> None:
        if ttl is None:
            self.expiry.pop(key, None)
        else:
            self.expiry[key] = self.clock() + ttl

    def ttl_of(self, session_id: str) -> float | None:
        """Seconds left (``None``: no expiry); for tests."""
        deadline = self.expiry.get(self.key(session_id))
        return None if deadline is None else deadline - self.clock()

    # -- the store's interface ---------------------------------------------------

    def read(self, session_id: str) -> dict[bytes, bytes]:
        self.calls.append("read")
        key = self.key(session_id)
        return dict(self.hashes[key]) if self._live(key) and key in self.hashes else {}

    def fetch(
        self,
        session_id: str,
        verify: Callable[[dict[bytes, bytes]], Any],
        keep_until: Callable[[Any], float],
    ) -> tuple[dict[bytes, bytes], Any, bool]:
        stored = self.read(session_id)  # no local cache: always a read
        return (stored, verify(stored), False) if stored else ({}, None, False)

    def load(
        self,
        session_id: str,
        timeout: int | None,
        absolute_timeout: int | None,
        now: float,
    ) -> dict[bytes, bytes]:
        self.calls.append("load")
        key = self.key(session_id)
        if not self._live(key) or key not in self.hashes:
            return {}
        fields = dict(self.hashes[key])
        try:
            created = parse_created(fields[CREATED][HEADER_SIZE:])
            own = fields.get(TIMEOUT)
            ttl = timeout if own is None else parse_timeout(own[HEADER_SIZE:])
        except (KeyError, BadValue):
            return fields  # not in a form the script trusts: left alone
        ttl = ttl or None
        if absolute_timeout is not None:
            left = min(math.ceil(created + absolute_timeout - now), absolute_timeout)
            if left <= 0:
                self._drop(key)
                return {}
            ttl = left if ttl is None else min(ttl, left)
        self._expire(key, ttl)
        return fields

    def create(
        self,
        session_id: str,
        fields: Sequence[bytes],
        ttl: int | None,
        replacing: Sequence[str] = (),
        *,
        index: Sequence[IndexUpdate] = (),
    ) -> bool:
        self.calls.append("create")
        for old in replacing:
            self._drop(old)
        key = self.key(session_id)
        created = not self._live(key)
        if created:
            self.hashes[key] = dict(zip(fields[::2], fields[1::2], strict=True))
            self._expire(key, ttl)
        self._apply_all(index)
        return created

    def move(
        self,
        old_key: str,
        session_id: str,
        fields: Sequence[bytes],
        ttl: int | None,
        *,
        index: Sequence[IndexUpdate] = (),
    ) -> int:
        self.calls.append("move")
        key = self.key(session_id)
        if not self._live(old_key):
            mine = self.hashes.get(key, {}).get(fields[0]) == fields[1]
            return MOVED if self._live(key) and mine else GONE
        if self._live(key):
            return TAKEN
        self._apply_all(index)
        self.hashes[key] = dict(zip(fields[::2], fields[1::2], strict=True))
        self._expire(key, ttl)
        self._drop(old_key)
        return MOVED

    def save(
        self,
        session_id: str,
        fields: Sequence[bytes],
        deleted: Sequence[bytes],
        ttl: int | None,
        index: Sequence[IndexUpdate] = (),
    ) -> bool:
        self.calls.append("save")
        key = self.key(session_id)
        applied = self._live(key) and key in self.hashes
        if applied:
            stored = self.hashes[key]
            stored.update(zip(fields[::2], fields[1::2], strict=True))
            for name in deleted:
                stored.pop(name, None)
            self._expire(key, ttl)
        self._apply_all(index)
        return applied

    def delete(self, *keys: str, index: Sequence[IndexUpdate] = ()) -> None:
        self.calls.append("delete")
        for key in keys:
            self._drop(key)
        self._apply_all(index)

    def load_legacy(self, key: str) -> tuple[bytes | None, int | None]:
        self.calls.append("load_legacy")
        if not self._live(key) or key not in self.strings:
            return None, None
        deadline = self.expiry.get(key)
        if deadline is None:
            return self.strings[key], None
        return self.strings[key], max(1, int(deadline - self.clock()))

    def index_members(self, key: str) -> list[tuple[str, float]]:
        self.calls.append("index_members")
        if not self._live(key):
            return []
        return sorted(self.indexes.get(key, {}).items(), key=lambda kv: (kv[1], kv[0]))

    def update_index(self, update: IndexUpdate) -> list[str]:
        self.calls.append("update_index")
        self._apply(update)
        return update.suspects

    def inspect(
        self, session_ids: Sequence[str], fields: Sequence[bytes]
    ) -> list[tuple[int, list[bytes | None]]]:
        self.calls.append("inspect")
        found = []
        for session_id in session_ids:
            key = self.key(session_id)
            if not self._live(key):
                found.append((-2, [None] * len(fields)))
                continue
            deadline = self.expiry.get(key)
            pttl = -1 if deadline is None else int((deadline - self.clock()) * 1000)
            stored = self.hashes.get(key, {})
            found.append((pttl, [stored.get(name) for name in fields]))
        return found

    def end(
        self,
        session_ids: Sequence[str],
        field: bytes,
        accepted: Sequence[Sequence[bytes]],
        index: IndexUpdate,
    ) -> list[bool]:
        self.calls.append("end")
        ended = []
        for session_id, values in zip(session_ids, accepted, strict=True):
            key = self.key(session_id)
            value = self.hashes.get(key, {}).get(field) if self._live(key) else None
            ended.append(value is not None and value in values)
            if ended[-1]:
                self._drop(key)
        self._apply(index)
        return ended

    # -- the index script -------------------------------------------------------

    def _apply_all(self, updates: Sequence[IndexUpdate]) -> None:
        for update in updates:
            self._apply(update)

    def _apply(self, update: IndexUpdate) -> None:
        now = self.clock()
        self._live(update.key)
        members = self.indexes.setdefault(update.key, {})
        for member in update.remove:
            members.pop(member, None)
        for member, score in update.add:
            members[member] = max(score, members.get(member, -math.inf))
        update.suspects = []
        if update.deadlines:
            for member, score in list(members.items()):
                if score <= now:
                    del members[member]
        else:
            update.suspects = sorted(m for m, s in members.items() if s <= now)
        if not members:
            self._drop(update.key)
            return
        last = max(members.values())
        if update.deadlines and last < math.inf:
            self.expiry[update.key] = math.ceil(last) + 1
        else:
            self.expiry.pop(update.key, None)

    # -- for tests -----------------------------------------------------------------

    def stored(self, session_id: str) -> dict[bytes, bytes]:
        """A session's hash as stored (empty if none), without a call."""
        key = self.key(session_id)
        return dict(self.hashes.get(key, {})) if self._live(key) else {}

    def __getattr__(self, name: str) -> Any:
        # Nothing else of RedisStore is faked: a test that needs it needs a
        # real server.
        raise AttributeError(f"MemoryStore has no {name!r}; use a real server")
