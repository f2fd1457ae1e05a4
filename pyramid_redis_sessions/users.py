"""A user's sessions: list them, end one, end them all ("log out everywhere").

Binding
-------

A session is bound to a user by a save, when the ``user_key`` option names
a session key that the request set, changed or deleted, or when the
application called :meth:`~pyramid_redis_sessions.RedisSession.bind_user`.
The binding is kept in the session itself, in two signed reserved fields:
``\\xffuser`` (the user, UTF-8) and ``\\xffuser-details`` (what the
application chose to record at login, JSON). Nothing else changes: loading
and saving a bound session costs what it costs unbound.

The index
---------

Per user, a sorted set of that user's session ids, scored by expiry, at::

    prefix + "user:{" + sha256(user)[:32 hex] + "}"

* The braces are a Cluster hash tag: all of one user's index is one key in
  one slot, while the session keys stay spread over the cluster.
* The user id is hashed, not escaped: a user id may hold ``{``, ``}`` or
  any byte, and user ids (often e-mail addresses) do not appear in key
  names, where ``SCAN``, ``MONITOR``, slow logs and keyspace notifications
  would show them. The hash is not keyed with the secret on purpose: a
  rotated secret must not lose the index. Whoever can read Redis can read
  the session values anyway; the hash only keeps names out of key lists.

The index is changed in the same pipeline as the save that binds, rebinds
or unbinds a session, that regenerates a bound session's id, or that
invalidates one (:mod:`pyramid_redis_sessions.store`); ordinary reads and
writes of a bound session never touch it.

Scores, pruning and expiry
--------------------------

A read slides a session's TTL without touching the index, so a score can
fall behind the session's real expiry. What a score means therefore
depends on ``absolute_timeout``:

* With ``absolute_timeout``, the score is the session's deadline
  (``created + absolute_timeout``), which no session outlives. Entries past
  their score are dead and pruned by score (``ZREMRANGEBYSCORE``) whenever
  the index is written, and the index key expires with its last deadline.
* Without it, the score is the expiry last known: "look again after". An
  entry whose score has passed is a *suspect*: whenever the index is read
  or written, the suspects' sessions are looked at (``PTTL`` and their
  signed user field, pipelined); the dead and those no longer bound to this
  user are removed, the live ones re-scored with their real expiry. So no
  live session is ever dropped from the index (``end_all`` after a password
  change must reach every one), expired entries never pile up, and the
  index key, having no deadline to expire at, is deleted by Redis when its
  last entry is pruned. The index of a user who never comes back is never
  read or written again, so nothing prunes it and Redis never deletes it:
  run ``psessions CONFIG_URI sweep`` periodically (daily from cron, say),
  which looks at the suspects of every index and removes those of ended
  sessions (:meth:`UserSessions.sweep`).

Entries of sessions that ended otherwise (invalidated, ended through this
module, or gone on Cluster between two commands) are removed at once or,
failing that, once their score has passed. Listing reads every session's
real TTL, so it is right whatever the scores say.

Costs, in round trips, for a user with N sessions (standalone; on Cluster
the per-session reads are pipelined per node):

* binding save: the save's own, plus (without ``absolute_timeout``, only
  when there are suspects) 2 to look at them and fix the index;
* :meth:`UserSessions.list`: 2, plus 1 when the index needs fixing;
* :meth:`UserSessions.end`, :meth:`UserSessions.end_all`: 2 (``end_all``:
  2 more, at most twice, when a listed session was found gone);
* ``psessions sweep``, per batch of indexes: its ``SCAN``, 1 to read the
  entries past their score, then 2 when there are any
  (:meth:`UserSessions.sweep`).

A ``regenerate_id()`` of a bound session moves its entry as it moves the
session, claimed then committed: the new id is listed before (Cluster) or
as (one server, in the move script) the old key is deleted, and the old id
unlisted only once it is; a move that finds the old session ended leaves
no entry. So every live session is listed at every moment, which
:meth:`UserSessions.end_all` relies on.

Handles
-------

A session's id is a bearer credential, so it never leaves this module:
sessions are named by their :mod:`~pyramid_redis_sessions.handles` handle
(128 bits of an HMAC of the id, keyed from ``secret``), the same that
``psessions`` shows. A handle is stable for the
life of the session, cannot be turned back into the id, and is only
accepted among the sessions of the user it is presented with.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .options import SessionOptions
from .store import IndexUpdate, RedisStore
from .values import (
    CREATED,
    TIMEOUT,
    USER,
    USER_DETAILS,
    BadValue,
    SessionSeal,
    parse_created,
    parse_timeout,
)

if TYPE_CHECKING:
    from pyramid.request import Request


__all__ = [
    "IndexChanges",
    "SessionInfo",
    "UserBinding",
    "UserSessions",
    "details_payload",
    "index_key",
    "user_payload",
]

_INDEX_DIGEST_HEX = 32
#: How many times end_all() reads the index again after finding a listed
#: session gone (moved to a new id meanwhile, perhaps).
_END_ROUNDS = 3
_FIELDS = (CREATED, TIMEOUT, USER, USER_DETAILS)


def index_key(prefix: str, user: str) -> str:
    """The Redis key of ``user``'s index (see the module's docstring)."""
    digest = hashlib.sha256(user_payload(user)).hexdigest()[:_INDEX_DIGEST_HEX]
    return f"{prefix}user:{{{digest}}}"


def user_payload(user: str) -> bytes:
    """The payload of the ``\\xffuser`` field."""
    return user.encode("utf-8", "surrogatepass")


def details_payload(details: Mapping[str, str]) -> bytes:
    """The payload of the ``\\xffuser-details`` field; ``TypeError`` unless
    ``details`` maps ``str`` to ``str``."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in details.items()):
        raise TypeError("session details must map str to str")
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":")).encode()


def _details(payload: bytes) -> dict[str, str]:
    """The details of a payload that this application signed."""
    value: dict[str, str] = json.loads(payload)
    return value


@dataclass(frozen=True)
class SessionInfo:
    """One live session of a user, as :meth:`UserSessions.list` sees it."""

    #: Names the session for :meth:`UserSessions.end`; never its id.
    handle: str
    #: When the session was created (seconds since the epoch).
    created: float
    #: When it was last used, derived from its TTL (``expires - timeout``):
    #: exact unless the TTL is cut short by ``absolute_timeout``, in which
    #: case it is the earliest it can have been. ``None`` without expiry.
    last_active: float | None
    #: When it expires unless used again; ``None`` for never.
    expires: float | None
    #: True for the session of the request the listing was made from.
    current: bool
    #: What the application recorded with ``bind_user(..., details=...)``.
    details: Mapping[str, str] = field(default_factory=dict)


class IndexChanges:
    """The index updates of one save, by user (built by the session)."""

    def __init__(self, prefix: str, deadlines: bool) -> None:
        self._prefix = prefix
        self._deadlines = deadlines
        self._by_user: dict[str, IndexUpdate] = {}

    def _update(self, user: str) -> IndexUpdate:
        if user not in self._by_user:
            key = index_key(self._prefix, user)
            self._by_user[user] = IndexUpdate(key, deadlines=self._deadlines)
        return self._by_user[user]

    def add(self, user: str, session_id: str, score: float) -> None:
        self._update(user).add.append((session_id, score))

    def remove(self, user: str, session_id: str) -> None:
        self._update(user).remove.append(session_id)

    @property
    def updates(self) -> list[IndexUpdate]:
        return list(self._by_user.values())

    def check_suspects(self, factory: SessionOptions, store: RedisStore) -> None:
        """After the save: look at the sessions whose entries' scores have
        passed (there are none with ``absolute_timeout``)."""
        for user, update in self._by_user.items():
            if update.suspects:
                sessions = UserSessions.from_store(factory, store)
                now = time.time()
                sessions._sweep(user, [(m, now) for m in update.suspects], now)


class UserBinding:
    """The user a session is bound to, and its share of the save.

    ``user`` and ``details`` are the stored binding (the ``\\xffuser`` and
    ``\\xffuser-details`` fields as loaded); :meth:`bind` records this
    request's ``bind_user()``; ``user_key`` (the option) makes a request that
    set, changed or deleted that session key rebind too. ``ended`` lists the
    (user, id) of bound sessions this request ended, to leave their index.
    """

    __slots__ = (
        "_bind",
        "_deadlines",
        "_prefix",
        "_user_key",
        "details",
        "ended",
        "user",
    )

    def __init__(self, prefix: str, deadlines: bool, user_key: str | None) -> None:
        self._prefix = prefix
        self._deadlines = deadlines
        self._user_key = user_key
        self.ended: list[tuple[str, str]] = []
        self.restart()

    def restart(self, user: str | None = None, details: bytes | None = None) -> None:
        """Take ``user`` and ``details`` as the stored binding, and forget
        this request's ``bind_user()`` (what it ended is kept)."""
        self.user, self.details = user, details
        self._bind: tuple[str | None, bytes | None] | None = None

    def bind(self, user: str | None, details: bytes | None) -> None:
        """``bind_user()``: bind to ``user`` (``None``: nobody) when saved."""
        self._bind = (user, details)

    def target(
        self, data: Mapping[str, object], touched: Collection[str]
    ) -> tuple[str | None, bytes | None]:
        """The user and details payload the session is bound to once saved:
        ``bind_user()``'s, else ``user_key``'s value if this request set,
        changed or deleted it, else the stored binding."""
        if self._bind is not None:
            return self._bind
        key = self._user_key
        if key is not None and key in touched:
            value = data.get(key)
            user = None if value is None else str(value)
            if user != self.user:
                return user, None
        return self.user, self.details

    def end(self, session_id: str) -> None:
        """The stored session ``session_id`` ends: unlist it when saved."""
        if self.user is not None:
            self.ended.append((self.user, session_id))

    def changes(self) -> IndexChanges:
        """The index updates this request needs whatever it saves."""
        index = IndexChanges(self._prefix, self._deadlines)
        for user, session_id in self.ended:
            index.remove(user, session_id)
        return index

    def field_changes(
        self, target: tuple[str | None, bytes | None]
    ) -> tuple[dict[bytes, bytes], list[bytes]]:
        """The payloads to set and the fields to delete to go from the
        stored binding to ``target``."""
        user, details = target
        if (user, details) == (self.user, self.details):
            return {}, []
        if user is None:
            return {}, [USER, USER_DETAILS]
        changes = {USER: user_payload(user)}
        deleted = []
        if details is not None:
            changes[USER_DETAILS] = details
        elif self.details is not None:
            deleted.append(USER_DETAILS)
        return changes, deleted

    def rebind(
        self,
        session_id: str,
        target: tuple[str | None, bytes | None],
        score: float,
        index: IndexChanges,
    ) -> None:
        """Add to ``index`` what rebinding the stored ``session_id`` to
        ``target`` needs."""
        user = target[0]
        if user != self.user:
            if self.user is not None:
                index.remove(self.user, session_id)
            if user is not None:
                index.add(user, session_id, score)

    def move(
        self,
        old_id: str | None,
        session_id: str,
        user: str | None,
        score: float,
    ) -> IndexChanges:
        """The index updates of a move to ``session_id``, applied only if it
        commits: the old id's entry out, the new one's in."""
        index = IndexChanges(self._prefix, self._deadlines)
        if self.user is not None and old_id is not None:
            index.remove(self.user, old_id)
        if user is not None:
            index.add(user, session_id, score)
        return index

    def stored_payload(self, field: bytes) -> bytes:
        """The payload of a loaded binding field, written again as it was."""
        if field == USER:
            assert self.user is not None  # loaded with the field
            return user_payload(self.user)
        assert self.details is not None
        return self.details

    @staticmethod
    def fields(
        seal: SessionSeal, target: tuple[str | None, bytes | None]
    ) -> list[bytes]:
        """The binding fields of a new key (flat)."""
        user, details = target
        if user is None:
            return []
        fields = [USER, seal.seal(USER, user_payload(user))]
        if details is not None:
            fields += [USER_DETAILS, seal.seal(USER_DETAILS, details)]
        return fields


class UserSessions:
    """List and end the sessions of a user.

    From a view, ``request.session.user_sessions()`` gives one that knows
    which session is the request's. From a script (a CLI, a job) with only
    the settings::

        factory = session_factory_from_settings(settings)
        sessions = UserSessions(factory)
        for info in sessions.list("42"):
            ...
        sessions.end_all("42")

    ``user`` is the user as the index knows it: ``str(session[user_key])``,
    or what was given to :meth:`~pyramid_redis_sessions.RedisSession.bind_user`.

    A factory with ``client_callable`` has no client of its own: pass the
    ``request`` then.
    """

    def __init__(self, factory: SessionOptions, request: Request | None = None) -> None:
        self._factory = factory
        self._current: str | None = None
        current: str | None = None
        if request is not None:
            store = factory.store_for(request)
            try:
                session = request.session
            except AttributeError:  # a bare request (a script's) has none
                session = None
            own = getattr(session, "user_sessions", None)  # a RedisSession's
            mine = own() if callable(own) else None
            if isinstance(mine, UserSessions):
                current = mine._current
        elif factory.store is not None:
            store = factory.store
        else:
            raise ValueError(
                "this factory gets its Redis client from client_callable, "
                "which needs a request: pass one"
            )
        self._store = store
        self._current = current

    @classmethod
    def from_store(
        cls, factory: SessionOptions, store: RedisStore, current: str | None = None
    ) -> UserSessions:
        """The sessions of ``factory``'s users in ``store`` (a script's, such
        as ``psessions``, which builds its store from a blank request, or a
        session's own); ``current`` is the id of the session to mark as the
        request's."""
        self = cls.__new__(cls)
        self._factory, self._store, self._current = factory, store, current
        return self

    @property
    def current_handle(self) -> str | None:
        """The handle of the request's session, or ``None`` (no request, or
        no stored session yet). Give it to :meth:`end_all` as ``keep``."""
        return None if self._current is None else self._handle(self._current)

    def _handle(self, session_id: str) -> str:
        return self._factory.handles(session_id)

    def _key(self, user: str) -> str:
        return index_key(self._factory.prefix, user)

    def list(self, user: str) -> builtins.list[SessionInfo]:
        """The live sessions of ``user``, oldest first. Prunes the index."""
        members = self._store.index_members(self._key(user))
        if not members:
            return []
        return self._sweep(user, members, time.time())

    def _sweep(
        self, user: str, members: Sequence[tuple[str, float]], now: float
    ) -> builtins.list[SessionInfo]:
        """Look at ``members``' sessions; fix the index (dead and foreign
        entries whose score has passed go, live ones get their real expiry);
        the live sessions of ``user``."""
        ids = [session_id for session_id, _ in members]
        seen = self._store.inspect(ids, _FIELDS)
        infos: builtins.list[SessionInfo] = []
        update = IndexUpdate(
            self._key(user), deadlines=self._factory.absolute_timeout is not None
        )
        for (session_id, score), (pttl, values) in zip(members, seen, strict=True):
            info = self._info(session_id, user, pttl, values, now)
            if info is None:
                # Not yet past its score, it may be a session being bound
                # right now on another Cluster node: left for later.
                if score <= now:
                    update.remove.append(session_id)
                continue
            infos.append(info)
            if score <= now:
                expires = math.inf if info.expires is None else info.expires
                update.add.append((session_id, expires))
        if update.remove or update.add:
            self._store.update_index(update)
        infos.sort(key=lambda info: info.created)
        return infos

    def sweep(
        self, suspects: Mapping[str, Sequence[tuple[str, float]]], now: float
    ) -> tuple[int, int, int]:
        """``psessions sweep``'s work on a batch of indexes: ``suspects``
        maps each index key to its entries whose score was ``now`` or less
        (later ones are skipped, as when a listing prunes: one may be a
        session being bound right now on another Cluster node). The entries
        of ended sessions go; those of live ones get their real expiry. An
        index key holds a hash of its user, not the user, so a live
        session's user field is not checked: its entry stays even if the
        session is bound to someone else (``end_all`` spares such a session
        anyway: the end script checks the field), until it ends.

        Two round trips: ``PTTL`` of the sessions (on Cluster, one per
        node, in parallel), then the index script and ``EXISTS`` on each
        index that changes. Returns the entries removed, the entries
        re-scored and the indexes left empty (and so deleted by Redis)."""
        pairs = [
            (k, m) for k, entries in suspects.items() for m, s in entries if s <= now
        ]
        if not pairs:
            return 0, 0, 0
        seen = self._store.inspect([session_id for _, session_id in pairs], ())
        deadlines = self._factory.absolute_timeout is not None
        updates = {key: IndexUpdate(key, deadlines=deadlines) for key, _ in pairs}
        for (key, session_id), (pttl, _) in zip(pairs, seen, strict=True):
            if pttl == -2:
                updates[key].remove.append(session_id)
            else:
                expires = math.inf if pttl == -1 else now + pttl / 1000
                updates[key].add.append((session_id, expires))
        left = self._store.update_indexes(list(updates.values()))
        changed = zip(updates.values(), left, strict=True)
        emptied = sum(1 for update, there in changed if update.remove and not there)
        removed = sum(len(update.remove) for update in updates.values())
        return removed, len(pairs) - removed, emptied

    def _info(
        self,
        session_id: str,
        user: str,
        pttl: int,
        values: Sequence[bytes | None],
        now: float,
    ) -> SessionInfo | None:
        """The session, if it lives and its signed user field is ``user``."""
        created_v, timeout_v, user_v, details_v = values
        if pttl == -2 or created_v is None or user_v is None:
            return None
        seal = self._factory.codec.for_session(session_id)
        try:
            if seal.open(USER, user_v)[0] != user_payload(user):
                return None
            created = parse_created(seal.open(CREATED, created_v)[0])
            timeout = self._factory.timeout
            if timeout_v is not None:
                timeout = parse_timeout(seal.open(TIMEOUT, timeout_v)[0]) or None
            details = (
                {}
                if details_v is None
                else _details(seal.open(USER_DETAILS, details_v)[0])
            )
        except (BadValue, ValueError):
            return None
        expires = None if pttl < 0 else now + pttl / 1000
        last_active = None
        if expires is not None and timeout is not None:
            last_active = min(now, max(created, expires - timeout))
        return SessionInfo(
            handle=self._handle(session_id),
            created=created,
            last_active=last_active,
            expires=expires,
            current=session_id == self._current,
            details=details,
        )

    def end(self, user: str, handle: str) -> bool:
        """End the session of ``user`` that ``handle`` names: its key is
        deleted, so its browser's next request starts a new session. False
        if no session of ``user`` has that handle."""
        members = self._store.index_members(self._key(user))
        for session_id, _ in members:
            if hmac.compare_digest(self._handle(session_id), handle):
                return self._end(user, [session_id]) == [True]
        return False

    def end_session(self, user: str, session_id: str) -> bool:
        """End the session ``session_id`` if its signed user is ``user``, and
        drop it from ``user``'s index either way (one round trip): for a
        caller that already holds the id, such as ``psessions end``. False if
        no session of ``user`` has that id."""
        return self._end(user, [session_id]) == [True]

    def end_all(self, user: str, keep: str | None = None) -> int:
        """End every session of ``user`` but the one whose handle is
        ``keep`` ("log out everywhere else": pass :attr:`current_handle`);
        the number ended.

        A session that a concurrent ``regenerate_id()`` moved to a new id
        between the reading of the index and its end is ended under its
        new id: a listed session found gone makes the index be read again
        (a move lists the new id before it deletes the old one), and the
        sessions new to it are ended too, a few rounds at most.
        """
        ended = 0
        seen: set[str] = set()
        for _ in range(_END_ROUNDS):
            members = self._store.index_members(self._key(user))
            ids = [
                m
                for m, _ in members
                if m not in seen and (keep is None or self._handle(m) != keep)
            ]
            if not ids:
                break
            seen.update(ids)
            results = self._end(user, ids)
            ended += sum(results)
            if all(results):
                break
        return ended

    def _end(self, user: str, session_ids: builtins.list[str]) -> builtins.list[bool]:
        """Delete those of ``session_ids`` whose signed user is ``user``
        (checked by the script that deletes them), and drop all of them
        from ``user``'s index; whether each was deleted."""
        payload = user_payload(user)
        accepted = [
            self._factory.codec.for_session(i).seals(USER, payload) for i in session_ids
        ]
        update = IndexUpdate(
            self._key(user),
            remove=list(session_ids),
            deadlines=self._factory.absolute_timeout is not None,
        )
        return self._store.end(session_ids, USER, accepted, update)
