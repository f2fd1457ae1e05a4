"""The session object: a dict that loads lazily and saves a delta once.

A request reads top to bottom:

1. :class:`RedisSession` is made when the view first uses
   ``request.session``: the cookie is read and checked
   (:mod:`.cookies`), Redis is not; its parts are made when first used.
2. The first read or write loads the session (:mod:`.localcache`: no
   round trip; else :mod:`.store`: one), or starts a new one when there
   is no valid cookie or no live key behind it. Every field's MAC is
   checked (:func:`.values.parse`); values are deserialized when first
   read; the expiry slides only when due (``slide_interval``). A legacy
   cookie loads its old session instead (:mod:`.migration`), which the
   save moves to a new id in the new format.
3. Dict work happens in memory; flash messages are kept by
   :mod:`.flash`, the user the session is bound to by
   :class:`.users.UserBinding`.
4. A response callback, registered once, saves at most once: only the
   fields this request set, changed in place or deleted, applied by one
   script that refuses a session which ended meanwhile
   (:meth:`RedisSession._finish`). Then it sets or clears the cookie.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from zope.interface import implementer

from .contents import NO_KEYS, Contents, Keys, deadline
from .events import Notifier, describe, has_applied_events
from .exceptions import SessionStoreError, SessionStoreUnavailable
from .flash import FlashQueues
from .lazy import lazy
from .legacy import LegacyCookie
from .mapping import SessionMapping, writes
from .migration import describe_move, load_legacy
from .options import SessionOptions
from .response import answer_error, set_cookie, vary_on_cookie
from .store import GONE, MOVED, RedisStore
from .users import UserBinding, UserSessions, details_payload
from .values import (
    MAX_SECONDS,
    BadValue,
    Record,
    SessionSeal,
    parse,
)

__all__ = ["RedisSession"]

log = logging.getLogger(__name__)

_CREATE_TRIES = 3


class _Ended:
    def __repr__(self) -> str:
        return "<ended meanwhile>"


#: ``_save``'s answer when the session ended while this request ran.
_ENDED: Any = _Ended()


@implementer(ISession)
class RedisSession(SessionMapping):
    """``request.session``: a dict kept in Redis.

    Made by the factory that :func:`~pyramid_redis_sessions.RedisSessionFactory`
    returns; applications do not make sessions themselves. Keys are ``str``
    (assigning another type raises :class:`TypeError`); values are whatever
    the serializer accepts.
    """

    # A new session is these class attributes, its own until assigned, and
    # the parts below, each made when first used: a request that only reads
    # a new, empty session (a bot's, with no cookie) makes none of them.
    _store: RedisStore | None = None
    _seal: SessionSeal | None = None
    _loaded = False
    _registered = False
    #: The key of the session this one moves away from when saved
    #: (``regenerate_id()``'s old id, a legacy session's key): claimed,
    #: then committed, so the new session is created only if that key
    #: still exists, and it is deleted only once the new one exists.
    _claim: str | None = None
    _regenerated_from: str | None = None  # the id regenerate_id() left
    _store_failed = False  # Redis was unreachable during this request
    _id: str | None = None  # the id to save under; made when needed
    _stored_id: str | None = None  # the id whose key holds us now
    _source_id: str | None = None  # the id it was loaded from
    _from_redis = False
    _dirty = False
    #: What the dict's methods work on: the shared, read-only NO_KEYS until
    #: the session has contents of its own (:meth:`_own`).
    _keys: Keys = NO_KEYS

    def __init__(self, request: Request, factory: SessionOptions) -> None:
        self._request = request
        self._factory = factory
        self._cookie = factory.cookie.read(request)
        #: Keys to delete when the response goes, whatever else happens:
        #: ended sessions' and bad values'.
        self._doomed: list[str] = []
        self._invalidated: list[str] = []  # the doomed ids invalidate() ended

    @lazy
    def _c(self) -> Contents:
        """What the session holds (a new session's, empty, created now)."""
        f = self._factory
        contents = Contents(f.serializer, f.detect_changes, f.timeout, f.slide_interval)
        self._keys = contents.keys
        return contents

    @lazy
    def _users(self) -> UserBinding:
        f = self._factory
        return UserBinding(f.prefix, f.absolute_timeout is not None, f.user_key)

    @lazy
    def _events(self) -> Notifier:
        return Notifier(self._request)

    def _own(self) -> None:
        """Before the first change of a new session: contents of its own."""
        if self._keys is NO_KEYS:
            self._keys = self._c.keys  # reading _c makes them

    def _start(self) -> None:
        """Become a new, empty session that is not stored anywhere yet: the
        class's attributes again, with contents made anew when used."""
        for name in ("_c", "_keys", "_id", "_stored_id", "_source_id", "_dirty"):
            vars(self).pop(name, None)
        self._from_redis = False
        self._users.restart()

    # -- loading ---------------------------------------------------------

    def _get_store(self) -> RedisStore:
        if self._store is None:
            self._store = self._factory.store_for(self._request)
        return self._store

    def _register(self) -> None:
        if not self._registered:
            self._request.add_response_callback(self._finish)
            self._registered = True

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._register()
        if self._cookie.session_id is not None:
            self._load_stored(self._cookie.session_id)
        elif self._cookie.legacy is not None:
            self._load_legacy(self._cookie.legacy)

    def _load_stored(self, session_id: str) -> None:
        f = self._factory
        store = self._get_store()
        try:
            record: Record | None = None
            hit = False
            if f.slide_interval:  # from the local cache, else a bare HGETALL
                stored, record, hit = store.fetch(
                    session_id,
                    lambda found: parse(found, self._seal_for(session_id)),
                    lambda found: deadline(found, f.timeout, f.absolute_timeout),
                )
            if record is None:
                # Every read slides, or a cookie without a session: the load
                # script, a write, so that a read-only replica met in a
                # failover answers READONLY (a 503) rather than "none", which
                # would log the user out.
                now = time.time()
                stored = store.load(session_id, f.timeout, f.absolute_timeout, now)
                record = parse(stored, self._seal_for(session_id)) if stored else None
            if record is not None and self._adopt(session_id, stored, record):
                self.loaded_from = "local cache" if hit else "redis"
        except BadValue as e:
            self._reject(session_id, str(e))
        except SessionStoreUnavailable as e:
            self._unavailable(e)
            raise

    def _adopt(
        self, session_id: str, stored: dict[bytes, bytes], record: Record
    ) -> bool:
        """Take the session whose fields' MACs ``record`` checked (nothing
        is deserialized here), unless it is past its absolute deadline: then
        it is deleted, this one starts anew, and the answer is false."""
        self._c.adopt(record, stored)
        if self._c.reserved.ended(self._factory.absolute_timeout, time.time()):
            self._doom(session_id)
            self._start()
            return False
        self._id = self._stored_id = self._source_id = session_id
        self._from_redis = True
        self._users.restart(record.user, record.user_details)
        return True

    def _load_legacy(self, cookie: LegacyCookie) -> None:
        """Load the session 1.x or pyramid_session_redis stored under the key
        a verified legacy cookie names, to be moved to a new id when the
        response goes, whether or not it was changed (see :mod:`.migration`)."""
        f = self._factory
        found = load_legacy(
            self._get_store(),
            cookie,
            loads=f.legacy_loads,
            serializer=f.serializer,
            prefix=f.prefix,
            absolute_timeout=f.absolute_timeout,
        )
        if found.doom:
            self._doom_key(found.key)
        if found.session is None:
            return
        legacy = found.session
        self._claim = found.key
        self._own()
        self._keys.data = found.data()
        self._c.flash = FlashQueues.of_messages(f.serializer, legacy.flash)
        self._c.reserved.created = legacy.created
        if legacy.timeout != f.timeout:
            self._c.reserved.give_timeout(legacy.timeout, changed=False)
        self._c.reserved.legacy_ttl = found.ttl
        self._c.reserved.slid = time.time()  # the move sets its expiry
        self._from_redis = True  # not new: it was the user's session already
        self._dirty = True

    def _seal_for(self, session_id: str) -> SessionSeal:
        """The sealer of ``session_id``'s fields, made once per id."""
        if self._seal is None or self._seal.session_id != session_id:
            self._seal = self._factory.codec.for_session(session_id)
        return self._seal

    def _doom(self, session_id: str) -> None:
        """Have the session ``session_id`` deleted when the response goes."""
        self._doom_key(self._get_store().key(session_id))

    def _doom_key(self, key: str) -> None:
        if key not in self._doomed:
            self._doomed.append(key)
        if key == self._claim:
            self._claim = None  # ended, not moved: nothing is carried over

    def _reject(self, session_id: str, reason: str) -> None:
        log.warning(
            "session value at %s could not be loaded (%s); starting a new session",
            describe(self._factory.prefix, session_id),
            reason,
        )
        self._doom(session_id)
        self._events.rejected(session_id, reason)

    def _unavailable(self, error: SessionStoreUnavailable) -> None:
        """Redis failed this request: from now on the session leaves Redis
        and the cookie alone (a transient error logs nobody out)."""
        self._store_failed = True
        self._events.unavailable(error.server)

    def _fail_decoding(self, error: BaseException) -> None:
        source = self._source_id
        assert source is not None  # only loaded fields are deserialized
        self._reject(source, f"{type(error).__name__} while deserializing")
        self._start()

    def _ttl(self) -> int | None:
        return self._c.reserved.ttl(self._factory.absolute_timeout)

    # -- saving ----------------------------------------------------------

    def _finish(self, request: Request, response: Response) -> None:
        """Response callback: save at most once, then set or clear the cookie."""
        # getattr: pyramid.testing.DummyRequest has no ``exception``.
        failed = getattr(request, "exception", None) is not None
        if self._store_failed or (failed and not self._factory.cookie_on_exception):
            return
        vary_on_cookie(response)
        try:
            live_id = self._save()
        except SessionStoreError as e:
            # The cookie is left as it is: the session in Redis did not change.
            if isinstance(e, SessionStoreUnavailable):
                self._unavailable(e)
            answer_error(request, response)
            return
        if live_id is _ENDED:
            # Another request ended or replaced this session: its cookie,
            # which may already be the browser's new one, is not ours to touch.
            return
        if has_applied_events(self._source_id, live_id, self._invalidated):
            # The notifier is made only when there is an event to send.
            self._events.applied(
                self._source_id, live_id, self._regenerated_from, self._invalidated
            )
        set_cookie(self._factory.cookie, self._cookie, response, live_id)

    def _target(self) -> tuple[str | None, bytes | None]:
        """The binding once saved (see :meth:`.UserBinding.target`)."""
        return self._users.target(self._keys.data, self._keys.touched)

    def _check_size(self) -> None:
        """:class:`SessionTooLarge` if this request's save would make the
        session take more than ``max_session_size`` bytes in Redis. Called
        once, before anything is written; costs nothing unless the save
        writes (see :meth:`.Contents.check_size`)."""
        limit = self._factory.max_session_size
        if limit is None or (self._stored_id is None and not self._dirty):
            return
        fields = None
        if self._stored_id is None:
            fields = self._all_fields(self._seal_for(self.session_id))
        self._c.check_size(limit, fields, self._users, self._target())

    def _save(self) -> Any:
        """Apply this request's changes in one round trip at most.

        Returns the id of the session that lives in Redis afterwards,
        ``None``, or ``_ENDED`` when the session ended while the request ran.
        """
        self._check_size()
        if self._stored_id is None:
            if self._dirty or self._claim is not None:
                return self._create()  # deletes what is doomed, in its round trip
        else:
            changes, deleted = self._c.delta(self._users)
            target = self._target()
            # A slide due is a change (contents.Reserved.add_slide).
            if changes or deleted or target != (self._users.user, self._users.details):
                return self._update(self._stored_id, changes, deleted, target)
        if self._doomed:
            self._get_store().delete(*self._doomed, index=self._users.changes().updates)
        return self._stored_id

    def _update(
        self,
        session_id: str,
        changes: dict[bytes, bytes],
        deleted: list[bytes],
        target: tuple[str | None, bytes | None],
    ) -> Any:
        """Save the delta of a stored session, with its binding's change and
        the index updates they need: ``session_id``, or ``_ENDED``."""
        index = self._users.changes()
        bound, unbound = self._users.field_changes(target)
        if bound or unbound:
            changes.update(bound)
            deleted += unbound
            self._users.rebind(session_id, target, self._index_score(), index)
        seal = self._seal_for(session_id)
        fields = [b for f, p in changes.items() for b in (f, seal.seal(f, p))]
        store = self._get_store()
        if store.save(session_id, fields, deleted, self._ttl(), index=index.updates):
            index.check_suspects(self._factory, store)
            return session_id
        log.info(
            "session %s ended during the request; its changes are dropped",
            describe(self._factory.prefix, session_id),
        )
        return _ENDED

    def _index_score(self) -> float:
        """The score of this session in its user's index: its deadline with
        ``absolute_timeout``, else its expiry as of now (``inf``: none)."""
        absolute = self._factory.absolute_timeout
        if absolute is not None:
            return self._c.reserved.created + absolute
        ttl = self._ttl()
        return math.inf if ttl is None else time.time() + ttl

    def _all_fields(self, seal: SessionSeal) -> list[bytes]:
        """Every field of this session, for a new key (flat)."""
        return self._c.fields(seal, self._target())

    def _create(self) -> Any:
        """Store this session under a new id: its id, or ``_ENDED`` when it
        was to move from a session that ended meanwhile.

        The keys of ended sessions are deleted in the same round trip, even
        if the create then fails: the user asked for them to end. A move
        (``_claim``) is claimed, then committed (:meth:`RedisStore.move`).
        """
        store = self._get_store()
        # Ending a session ends its move too (_doom_key): never both.
        assert self._claim is None or not self._doomed
        replacing = tuple(self._doomed)
        user = self._target()[0]
        for _ in range(_CREATE_TRIES):
            session_id = self.session_id
            fields = self._all_fields(self._seal_for(session_id))
            if self._claim is None:
                index = self._users.changes()
                if user is not None:
                    index.add(user, session_id, self._index_score())
                created = store.create(
                    session_id, fields, self._ttl(), replacing, index=index.updates
                )
                replacing = ()  # deleted by the first try
            else:
                index = self._users.move(
                    self._regenerated_from, session_id, user, self._index_score()
                )
                moved = store.move(
                    self._claim, session_id, fields, self._ttl(), index=index.updates
                )
                if moved == GONE:
                    log.info(
                        "session %s ended during the request; its move to a "
                        "new id is dropped",
                        describe_move(
                            self._factory.prefix, self._regenerated_from, self._claim
                        ),
                    )
                    return _ENDED
                created = moved == MOVED
            if created:
                self._stored_id = session_id
                index.check_suspects(self._factory, store)
                return session_id
            self._id = None
        raise SessionStoreError(
            f"no free session id in {_CREATE_TRIES} tries: id_generator "
            "returns ids that are already in use"
        )

    # -- ISession --------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The id the session is stored under (a new one is made, not saved,
        for a new session). Keep it secret: it is the user's credential."""
        self._load()
        if self._id is None:
            self._id = self._factory.id_generator()
        return self._id

    @property
    def created(self) -> float:
        """When the session was created (seconds since the epoch)."""
        self._load()
        return self._c.reserved.created

    @property
    def new(self) -> bool:
        """True when the session was created by this request."""
        self._load()
        return not self._from_redis

    @property
    def timeout(self) -> int | None:
        """This session's timeout in seconds (``None``: no expiry)."""
        self._load()
        return self._c.reserved.timeout

    def invalidate(self) -> None:
        """End the session: its key is deleted and this object is empty and
        new; anything written to it afterwards starts a new session."""
        old = self._current_id()
        if old is None:
            old, self._regenerated_from = self._regenerated_from, None
        if old is not None:
            self._doom(old)
            self._invalidated.append(old)
            self._users.end(old)
        if self._claim is not None:  # a legacy session's key, loaded
            self._doom_key(self._claim)
        legacy = self._cookie.legacy
        if legacy is not None and not self._loaded:
            self._doom_key(legacy.redis_key)  # deleted unread
        self._loaded = True
        self._register()
        self._start()

    def regenerate_id(self) -> None:
        """Move the data to a new session id and delete the old key.

        Call it when privileges change (at login) so that an id planted in
        the browser beforehand is worth nothing afterwards.

        The move happens when the response is saved, and only if the old
        session still exists then: one that a logout, ``end_all()``, expiry
        or another move ended meanwhile stays ended (the response sets no
        cookie). The old key is deleted only once the new one exists: if
        Redis cannot create it, the user keeps the old session and the
        request gets a
        :class:`~pyramid_redis_sessions.exceptions.SessionStoreUnavailable`.

        .. versionadded:: 2.0
        """
        self._load()
        if self._stored_id is not None:
            self._claim = self._get_store().key(self._stored_id)
            self._regenerated_from = self._stored_id
            self._stored_id = None
            self._dirty = True
        self._id = None

    @writes
    def changed(self) -> None:
        """Mark the session changed: values read by this request are saved
        even when they were changed in place with ``detect_changes`` off."""
        self._keys.changed_all = True

    def adjust_timeout_for_session(self, timeout_seconds: int | None) -> None:
        """Give this session its own timeout (``None`` or 0: no expiry)."""
        if timeout_seconds is not None and (
            not isinstance(timeout_seconds, int)
            or isinstance(timeout_seconds, bool)
            or not 0 <= timeout_seconds <= MAX_SECONDS
        ):
            raise ValueError(
                f"timeout_seconds must be a whole number from 0 to {MAX_SECONDS}, "
                "or None"
            )
        self._load()
        self._c.reserved.give_timeout(timeout_seconds or None)
        self._dirty = True

    def bind_user(
        self, user: str | None, details: Mapping[str, str] | None = None
    ) -> None:
        """Index this session under ``user`` (``None``: under nobody), for
        applications that keep the user elsewhere than in ``user_key``.

        ``details`` are a few strings to show in the user's list of
        sessions (user agent, IP address, how they logged in); they are kept
        in the session until it is bound again. The index is updated when
        the response is saved, in the same round trip; an unchanged binding
        costs nothing. Call it after
        :meth:`regenerate_id` at login, and with ``None`` at logout if the
        session lives on.

        .. versionadded:: 2.0
        """
        if user is not None and not isinstance(user, str):
            raise TypeError(f"user must be a str or None, not {type(user).__name__}")
        payload = None if details is None or user is None else details_payload(details)
        self._load()
        self._users.bind(user, payload)
        self._dirty = True

    @property
    def bound_user(self) -> str | None:
        """The user this session is indexed under, as of its last save or
        this request's :meth:`bind_user`; ``None`` if it is under nobody.

        .. versionadded:: 2.0
        """
        self._load()
        return self._target()[0]

    def user_sessions(self) -> UserSessions:
        """A :class:`~pyramid_redis_sessions.users.UserSessions` on this
        request's store that knows which session is this one (its
        ``current_handle``, and ``current`` in the listing).

        .. versionadded:: 2.0
        """
        return UserSessions.from_store(
            self._factory, self._get_store(), self._current_id()
        )

    def _current_id(self) -> str | None:
        """The id of the stored session, without loading it."""
        return self._stored_id if self._loaded else self._cookie.session_id

    # -- flash (its methods are SessionMapping's) ------------------------

    def _queues(self) -> FlashQueues:
        """The flash queues, their loaded messages decoded. A message that
        will not deserialize ends the session as a bad stored value does."""
        self._load()
        queues = self._c.queues()
        try:
            queues.decode()
        except Exception as e:  # a serializer may raise anything
            self._fail_decoding(e)
            queues = self._c.queues()
            queues.decode()
        return queues
