"""The session object: a dict that loads lazily and saves a delta once.

A request reads top to bottom:

1. :class:`RedisSession` is made when the view first uses
   ``request.session``: the cookie is read and checked, Redis is not.
2. The first read or write loads the session (one script call: every field
   of its hash, and its expiry slid), or starts a new one when there is no
   valid cookie or no live key behind it. Every field's MAC is checked
   there; values are deserialized only when first read. A verified cookie
   of 1.x or pyramid_session_redis loads that package's value instead
   (:meth:`RedisSession._load_legacy`), which the save then moves to a new
   id in the new format.
3. Dict work happens in memory.
4. A response callback, registered once, saves at most once: only the
   fields this request set, changed in place or deleted, applied by one
   script that refuses a session which ended meanwhile
   (:meth:`RedisSession._finish`). Then it sets or clears the cookie.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import reprlib
import secrets
import threading
import time
from collections.abc import (
    Callable,
    ItemsView,
    Iterator,
    KeysView,
    Mapping,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.request import Request
from pyramid.response import Response
from zope.interface import implementer

from .cookies import CookieCodec
from .events import (
    SessionCreated,
    SessionIdRegenerated,
    SessionInvalidated,
    SessionValueRejected,
    StoreUnavailable,
    key_digest,
)
from .exceptions import (
    BadLegacyValue,
    SessionStoreError,
    SessionStoreUnavailable,
    SessionTooLarge,
)
from .handles import Handles
from .legacy import LegacyCookie, LegacySession, RestrictedLoads, decode_value
from .serializers import Serializer
from .store import GONE, MOVED, RedisStore
from .users import IndexChanges, UserSessions, details_payload, user_payload
from .values import (
    CREATED,
    FLASH,
    HEADER_SIZE,
    MAX_SECONDS,
    RESERVED,
    TIMEOUT,
    USER,
    USER_DETAILS,
    BadValue,
    FieldCodec,
    SessionSeal,
    field_name,
    flash_queue,
    key_name,
    parse_created,
    parse_timeout,
)

__all__ = ["RedisSession", "SessionFactory"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# Pyramid's (and 1.x's) name of the CSRF token inside the session.
_CSRF_KEY = "_csrft_"
_CREATE_TRIES = 3
#: Values that cannot change in place, so reading them never needs a
#: serialization at the end of the request to see whether they changed.
_IMMUTABLE = frozenset({str, int, float, bool, bytes, complex, type(None)})


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: In ``_data``: a field loaded from Redis, not deserialized yet.
_PENDING: Any = _Marker("<not deserialized>")
_MISSING: Any = _Marker("<missing>")
#: ``_save``'s answer when the session ended while this request ran.
_ENDED: Any = _Marker("<ended meanwhile>")


@implementer(ISessionFactory)
@dataclass(frozen=True, kw_only=True, eq=False)
class SessionFactory:
    """What :func:`~pyramid_redis_sessions.RedisSessionFactory` returns:
    called with a request, it returns that request's :class:`RedisSession`.

    Its attributes are the checked options, built once.
    """

    codec: FieldCodec
    cookie: CookieCodec
    serializer: Serializer
    timeout: int | None
    absolute_timeout: int | None
    cookie_on_exception: bool
    detect_changes: bool
    id_generator: Callable[[], str]
    prefix: str
    #: The shared store, or ``None`` when ``client_callable`` gives clients.
    store: RedisStore | None
    client_callable: Callable[..., redis.Redis] | None
    redis_options: dict[str, Any]
    #: Reads the values of legacy sessions (1.x's ``deserialize``).
    legacy_loads: Callable[[bytes], Any] = dataclasses.field(
        default_factory=RestrictedLoads
    )
    #: The session key that names the user (the ``user_key`` option).
    user_key: str | None = None
    #: Names sessions for people without their ids (:mod:`.handles`).
    handles: Handles
    #: The most bytes a session may take in Redis (``None``: no limit).
    max_session_size: int | None = None

    def __call__(self, request: Request) -> RedisSession:
        return RedisSession(request, self)

    def store_for(self, request: Request) -> RedisStore:
        """The store a request uses; ``client_callable`` is asked here."""
        if self.store is not None:
            return self.store
        assert self.client_callable is not None
        client = self.client_callable(request, **self.redis_options)
        return RedisStore(client, self.prefix)


def _reads(
    method: Callable[Concatenate[RedisSession, P], R],
) -> Callable[Concatenate[RedisSession, P], R]:
    @functools.wraps(method)
    def wrapper(self: RedisSession, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._load()
        return method(self, *args, **kwargs)

    return wrapper


def _writes(
    method: Callable[Concatenate[RedisSession, P], R],
) -> Callable[Concatenate[RedisSession, P], R]:
    @functools.wraps(method)
    def wrapper(self: RedisSession, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._load()
        self._dirty = True
        return method(self, *args, **kwargs)

    return wrapper


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__}")
    return key


_order_lock = threading.Lock()
_last_order = 0


def _flash_field(queue: str) -> bytes:
    """A new flash message's field: ordered by time, unique across servers
    (an order of ``values.FLASH_ORDER_SIZE`` characters)."""
    global _last_order
    with _order_lock:
        _last_order = max(time.time_ns(), _last_order + 1)
        order = _last_order
    return b"%s%020d%s:%s" % (
        FLASH,
        order,
        secrets.token_hex(4).encode(),
        field_name(queue),
    )


def _largest(sizes: dict[bytes, int], count: int = 3) -> list[tuple[str, int]]:
    """The ``count`` largest session keys (a flash queue counts as one) and
    the bytes each takes (its field's name and value), for
    :class:`SessionTooLarge`'s message."""
    totals: dict[str, int] = {}
    for field, size in sizes.items():
        if field.startswith(FLASH):
            name = f"flash queue {_name_repr.repr(flash_queue(field))}"
        elif field[:1] == RESERVED:
            name = field[1:].decode("ascii", "replace")
        else:
            name = _name_repr.repr(key_name(field))
        totals[name] = totals.get(name, 0) + len(field) + size
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


_name_repr = reprlib.Repr()
_name_repr.maxstring = 60


@implementer(ISession)
class RedisSession:
    """``request.session``: a dict kept in Redis.

    Made by the factory that :func:`~pyramid_redis_sessions.RedisSessionFactory`
    returns; applications do not make sessions themselves. Keys are ``str``
    (assigning another type raises :class:`TypeError`); values are whatever
    the serializer accepts.
    """

    def __init__(self, request: Request, factory: SessionFactory) -> None:
        self._request = request
        self._factory = factory
        self._cookie = factory.cookie.read(request)
        self._store: RedisStore | None = None
        self._seal: SessionSeal | None = None
        self._loaded = False
        self._registered = False
        #: Keys to delete when the response goes, whatever else happens:
        #: ended sessions' and bad values'.
        self._doomed: list[str] = []
        #: The key of the session this one moves away from when saved
        #: (``regenerate_id()``'s old id, a legacy session's key): claimed,
        #: then committed, so the new session is created only if that key
        #: still exists, and it is deleted only once the new one exists.
        self._claim: str | None = None
        #: (user, id) of bound sessions this request ended.
        self._unindex: list[tuple[str, str]] = []
        self._invalidated: list[str] = []  # the doomed ids invalidate() ended
        self._regenerated_from: str | None = None  # the id regenerate_id() left
        self._store_failed = False  # Redis was unreachable during this request
        self._listening: bool | None = None  # anyone subscribed; asked once
        self._start()

    def _start(self) -> None:
        """Become a new, empty session that is not stored anywhere yet."""
        #: Session keys to values, or to ``_PENDING`` until first read.
        self._data: dict[str, Any] = {}
        #: Payloads of the fields as loaded, by session key.
        self._loaded_payloads: dict[str, bytes] = {}
        #: The hash as loaded, field to stored value: their sizes are what
        #: the session takes in Redis before this request's save.
        self._stored_fields: dict[bytes, bytes] = {}
        #: ``_check_size``'s delta, which ``_delta`` then returns once.
        self._checked_delta: tuple[dict[bytes, bytes], list[bytes]] | None = None
        #: Keys this request assigned or deleted: always part of the delta.
        self._touched: set[str] = set()
        #: Loaded keys deserialized by this request: they may change in place.
        self._decoded: list[str] = []
        self._changed_all = False
        #: Loaded flash fields to payloads; decoded into ``_flash`` when
        #: flash is first used.
        self._flash_payloads: dict[bytes, bytes] = {}
        #: Reserved fields of a later format, kept (resealed, carried to a
        #: new id) but not understood.
        self._later_payloads: dict[bytes, bytes] = {}
        self._flash: dict[str, dict[bytes, Any]] | None = None
        self._flash_added: dict[bytes, Any] = {}
        self._flash_removed: set[bytes] = set()
        #: Fields that only a fallback secret verified: sealed anew on save.
        self._reseal: set[bytes] = set()
        self._created = time.time()
        self._timeout = self._factory.timeout
        self._own_timeout = False  # stored in the session's TIMEOUT field
        self._timeout_changed = False
        self._id: str | None = None  # the id to save under; made when needed
        self._stored_id: str | None = None  # the id whose key holds us now
        self._source_id: str | None = None  # the id it was loaded from
        self._from_redis = False
        self._dirty = False
        #: A moved legacy session's key may not outlive the old one's TTL.
        self._legacy_ttl: int | None = None
        #: The user the stored session is bound to, and its details payload.
        self._user: str | None = None
        self._user_details: bytes | None = None
        #: ``bind_user()``'s (user, details payload), or ``_MISSING``.
        self._bind: Any = _MISSING

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
        try:
            stored = self._get_store().load(
                session_id, f.timeout, f.absolute_timeout, time.time()
            )
            if stored:
                self._adopt(session_id, stored)
        except BadValue as e:
            self._reject(session_id, str(e))
        except SessionStoreUnavailable as e:
            self._unavailable(e)
            raise

    def _adopt(self, session_id: str, stored: dict[bytes, bytes]) -> None:
        """Check every field's MAC and take the session; BadValue if any
        field does not verify. Nothing is deserialized here."""
        payloads, reseal = self._seal_for(session_id).open_all(stored)
        user_payloads = {
            field.decode("utf-8", "surrogatepass"): payload
            for field, payload in payloads.items()
            if field[:1] != RESERVED
        }
        data: dict[str, Any] = dict.fromkeys(user_payloads, _PENDING)
        flash: dict[bytes, bytes] = {}
        later: dict[bytes, bytes] = {}
        created = timeout = None
        user = user_details = None
        for field, payload in payloads.items():
            if field[:1] != RESERVED:
                continue
            if field.startswith(FLASH):
                flash[field] = payload
            elif field == CREATED:
                created = parse_created(payload)
            elif field == TIMEOUT:
                timeout = parse_timeout(payload)
            elif field == USER:
                user = key_name(payload)
            elif field == USER_DETAILS:
                user_details = payload
            else:  # a later format's: verified, kept as it is
                later[field] = payload
        if created is None:
            raise BadValue("the session has no creation time")
        self._data = data
        self._loaded_payloads = user_payloads
        self._stored_fields = stored
        self._flash_payloads = flash
        self._later_payloads = later
        self._reseal = reseal
        self._created = created
        if timeout is not None:
            self._timeout = timeout or None
            self._own_timeout = True
        self._id = self._stored_id = self._source_id = session_id
        self._from_redis = True
        self._user, self._user_details = user, user_details

    def _load_legacy(self, cookie: LegacyCookie) -> None:
        """Load the session 1.x or pyramid_session_redis stored under the key
        a verified legacy cookie names, to be moved to a new id in the new
        format when the response goes, as ``regenerate_id()`` moves one
        (the old key deleted once the new one exists). The value is an
        unsigned pickle: this is the only path that reads one, and only for
        a cookie signed with the secret."""
        key = cookie.redis_key
        try:
            raw, ttl = self._get_store().load_legacy(key)
        except BadValue as e:  # the key holds another Redis type
            self._reject_legacy(key, str(e))
            return
        if raw is None:
            return  # expired: a fresh session, and the cookie is cleared
        try:
            legacy = decode_value(cookie.kind, raw, self._factory.legacy_loads)
            self._check_serializable(legacy)
        except BadLegacyValue as e:
            self._reject_legacy(key, str(e))
            return
        absolute = self._factory.absolute_timeout
        if absolute is not None and legacy.created + absolute <= time.time():
            self._doom_key(key)
            return  # past its deadline: gone, as the load script would say
        self._claim = key
        if legacy.dropped_keys:
            log.warning(
                "legacy session at %s had keys that are not str, which the new "
                "format cannot store; dropped: %s",
                self._describe_legacy(key),
                ", ".join(legacy.dropped_keys),
            )
        self._adopt_legacy(legacy, ttl)

    def _check_serializable(self, legacy: LegacySession) -> None:
        """BadLegacyValue unless the serializer can store every value, so that
        the move cannot fail in the response callback."""
        dumps = self._factory.serializer.dumps
        try:
            for value in legacy.data.values():
                dumps(value)
            for messages in legacy.flash.values():
                for message in messages:
                    dumps(message)
        except Exception as e:  # a serializer may raise anything
            raise BadLegacyValue(
                f"{type(e).__name__} while serializing for the new format"
            ) from None

    def _adopt_legacy(self, legacy: LegacySession, ttl: int | None) -> None:
        """Take a decoded legacy session as this request's, not stored yet:
        the save creates it under a new id, whether or not it was changed."""
        data = dict(legacy.data)
        if legacy.csrf_token is not None:
            data[_CSRF_KEY] = legacy.csrf_token
        self._data = data
        flash: dict[str, dict[bytes, Any]] = {}
        for queue, messages in legacy.flash.items():
            for message in messages:
                field = _flash_field(queue)
                flash.setdefault(queue, {})[field] = message
                self._flash_added[field] = message
        self._flash = flash
        self._created = legacy.created
        if legacy.timeout != self._factory.timeout:
            self._timeout = legacy.timeout
            self._own_timeout = True
        self._legacy_ttl = ttl
        self._from_redis = True  # not new: it was the user's session already
        self._dirty = True

    def _reject_legacy(self, key: str, reason: str) -> None:
        log.warning(
            "legacy session value at %s could not be loaded (%s); starting a "
            "new session",
            self._describe_legacy(key),
            reason,
        )
        self._doom_key(key)

    def _describe_legacy(self, key: str) -> str:
        """Name a legacy key in logs: the current prefix if it has it, and a
        digest of the rest, which holds the old session id."""
        prefix = self._factory.prefix
        if not (prefix and key.startswith(prefix)):
            prefix = ""
        return f"legacy key {prefix}<sha256:{key_digest(key[len(prefix) :])}>"

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
            self._describe(session_id),
            reason,
        )
        self._doom(session_id)
        if self._has_listeners():
            self._request.registry.notify(
                SessionValueRejected(self._request, reason, key_digest(session_id))
            )

    def _describe(self, session_id: str) -> str:
        """Name a key in logs without its id, which is a bearer secret."""
        return f"{self._factory.prefix}<sha256:{key_digest(session_id)}>"

    # -- events ----------------------------------------------------------

    def _has_listeners(self) -> bool:
        """Whether any subscriber is registered: events cost nothing when
        none is (Pyramid's own check, asked once per request)."""
        if self._listening is None:
            registry = getattr(self._request, "registry", None)
            self._listening = bool(getattr(registry, "has_listeners", False))
        return self._listening

    def _unavailable(self, error: SessionStoreUnavailable) -> None:
        """Redis failed this request: from now on the session leaves Redis
        and the cookie alone (a transient error logs nobody out)."""
        self._store_failed = True
        if self._has_listeners():
            server = error.server or "server unknown"
            self._request.registry.notify(StoreUnavailable(self._request, server))

    def _announce(self, live_id: str | None) -> None:
        """Send the events of the changes this request applied."""
        notify, request = self._request.registry.notify, self._request
        if live_id is not None and live_id != self._source_id:
            if self._regenerated_from is not None:
                old = key_digest(self._regenerated_from)
                notify(SessionIdRegenerated(request, key_digest(live_id), old))
            else:
                notify(SessionCreated(request, key_digest(live_id)))
        for ended in self._invalidated:
            notify(SessionInvalidated(request, key_digest(ended)))

    def _decode(self, key: str) -> Any:
        """The value of a loaded key, deserialized now. A value that will not
        deserialize ends the session as a bad stored value does: the
        session starts afresh and ``_MISSING`` is returned."""
        try:
            value = self._factory.serializer.loads(self._loaded_payloads[key])
        except Exception as e:  # a serializer may raise anything on bad bytes
            self._fail_decoding(e)
            return _MISSING
        self._data[key] = value
        self._decoded.append(key)
        return value

    def _fail_decoding(self, error: Exception) -> None:
        source = self._source_id
        assert source is not None  # only loaded fields are deserialized
        self._reject(source, f"{type(error).__name__} while deserializing")
        self._start()

    def _value(self, key: str) -> Any:
        value = self._data.get(key, _MISSING)
        return self._decode(key) if value is _PENDING else value

    def _decode_all(self) -> None:
        for key, value in list(self._data.items()):
            if value is _PENDING and self._decode(key) is _MISSING:
                return

    def _ttl(self) -> int | None:
        ttl = self._timeout
        absolute = self._factory.absolute_timeout
        if absolute is not None:
            left = max(1, math.ceil(self._created + absolute - time.time()))
            ttl = left if ttl is None else min(ttl, left)
        if self._legacy_ttl is not None:
            ttl = self._legacy_ttl if ttl is None else min(ttl, self._legacy_ttl)
        return ttl

    # -- the size limit --------------------------------------------------

    def _check_size(self) -> None:
        """:class:`SessionTooLarge` if this request's save would make the
        session take more than ``max_session_size`` bytes in Redis (field
        names and stored values). Called once, before anything is written;
        costs nothing unless the save writes: the stored sizes are those of
        the hash as loaded, and the delta it works out is the one the save
        then uses."""
        limit = self._factory.max_session_size
        if limit is None:
            return
        if self._stored_id is None:
            if not self._dirty:
                return
            pairs = iter(self._all_fields(self._seal_for(self.session_id)))
            sizes = {f: len(v) for f, v in zip(pairs, pairs, strict=True)}
        else:
            changes, deleted = self._checked_delta = self._delta()
            added, removed = dict(changes), list(deleted)
            user, details = self._binding()
            if (user, details) != (self._user, self._user_details):
                # What _rebind adds to the delta.
                if user is None:
                    removed += [USER, USER_DETAILS]
                else:
                    added[USER] = user_payload(user)
                    if details is not None:
                        added[USER_DETAILS] = details
                    elif self._user_details is not None:
                        removed.append(USER_DETAILS)
            if not added:
                return  # nothing grows
            sizes = {field: len(value) for field, value in self._stored_fields.items()}
            for field in removed:
                sizes.pop(field, None)
            for field, payload in added.items():
                sizes[field] = HEADER_SIZE + len(payload)
        size = sum(map(len, sizes)) + sum(sizes.values())
        if size > limit:
            raise SessionTooLarge(size, limit, _largest(sizes))

    # -- saving ----------------------------------------------------------

    def _finish(self, request: Request, response: Response) -> None:
        """Response callback: save at most once, then set or clear the cookie."""
        # getattr: pyramid.testing.DummyRequest has no ``exception``.
        failed = getattr(request, "exception", None) is not None
        if self._store_failed or (failed and not self._factory.cookie_on_exception):
            return
        headers = response.headerlist
        if all(name.lower() != "vary" for name, _ in headers):
            headers.append(("Vary", "Cookie"))  # the common case, no parsing
        else:
            vary = response.vary or ()
            if "Cookie" not in vary:
                response.vary = (*vary, "Cookie")
        try:
            live_id = self._save()
        except SessionStoreError as e:
            # The cookie is left as it is: the session in Redis did not change.
            if isinstance(e, SessionStoreUnavailable):
                self._unavailable(e)
            self._answer_error(request, response)
            return
        if live_id is _ENDED:
            # Another request ended or replaced this session: its cookie,
            # which may already be the browser's new one, is not ours to touch.
            return
        if self._has_listeners():
            self._announce(live_id)
        codec, cookie = self._factory.cookie, self._cookie
        if live_id is None:
            if cookie.present:
                codec.delete(response)
        elif (
            live_id != cookie.session_id
            or not cookie.current
            or codec.settings.max_age is not None
        ):
            codec.set(response, live_id)

    @staticmethod
    def _answer_error(request: Request, response: Response) -> None:
        """The save at the end of the request failed with a
        :class:`~pyramid_redis_sessions.exceptions.SessionStoreError` (being
        handled): the response becomes what the application's exception view
        for it answers (for an unreachable Redis, a 503 with
        ``config.include``). Response callbacks run outside Pyramid's
        exception views, so the view is invoked here; without one the error
        propagates as before."""
        answer = request.invoke_exception_view(reraise=True)
        prepare = getattr(answer, "prepare", None)
        if prepare is not None:  # an HTTPException renders its body lazily
            prepare(request.environ)
        response.status = answer.status
        response.headerlist[:] = answer.headerlist
        response.app_iter = answer.app_iter

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
            changes, deleted = self._delta()
            if (
                changes
                or deleted
                or self._binding() != (self._user, self._user_details)
            ):
                return self._update(self._stored_id, changes, deleted)
        if self._doomed:
            self._get_store().delete(*self._doomed, index=self._index_changes().updates)
        return self._stored_id

    def _update(
        self, session_id: str, changes: dict[bytes, bytes], deleted: list[bytes]
    ) -> Any:
        """Save the delta of a stored session, with its binding's change and
        the index updates they need: ``session_id``, or ``_ENDED``."""
        index = self._index_changes()
        self._rebind(session_id, changes, deleted, index)
        seal = self._seal_for(session_id)
        fields = [b for f, p in changes.items() for b in (f, seal.seal(f, p))]
        store = self._get_store()
        if store.save(session_id, fields, deleted, self._ttl(), index=index.updates):
            index.check_suspects(self._factory, store)
            return session_id
        log.info(
            "session %s ended during the request; its changes are dropped",
            self._describe(session_id),
        )
        return _ENDED

    # -- the user sessions index (see .users) ------------------------------

    def _binding(self) -> tuple[str | None, bytes | None]:
        """The user and details payload the session is bound to once saved:
        ``bind_user()``'s, else ``user_key``'s value if this request set,
        changed or deleted it, else the stored binding."""
        if self._bind is not _MISSING:
            bind: tuple[str | None, bytes | None] = self._bind
            return bind
        key = self._factory.user_key
        if key is not None and key in self._touched:
            value = self._data.get(key)
            user = None if value is None else str(value)
            if user != self._user:
                return user, None
        return self._user, self._user_details

    def _index_score(self) -> float:
        """The score of this session in its user's index: its deadline with
        ``absolute_timeout``, else its expiry as of now (``inf``: none)."""
        absolute = self._factory.absolute_timeout
        if absolute is not None:
            return self._created + absolute
        ttl = self._ttl()
        return math.inf if ttl is None else time.time() + ttl

    def _index_changes(self) -> IndexChanges:
        index = IndexChanges(
            self._factory.prefix, self._factory.absolute_timeout is not None
        )
        for user, session_id in self._unindex:
            index.remove(user, session_id)
        return index

    def _rebind(
        self,
        session_id: str,
        changes: dict[bytes, bytes],
        deleted: list[bytes],
        index: IndexChanges,
    ) -> None:
        """Add a binding's change to the delta of a stored session, and the
        index updates it needs."""
        user, details = self._binding()
        if (user, details) == (self._user, self._user_details):
            return
        if user is None:
            deleted += [USER, USER_DETAILS]
        else:
            changes[USER] = user_payload(user)
            if details is not None:
                changes[USER_DETAILS] = details
            elif self._user_details is not None:
                deleted.append(USER_DETAILS)
        if user != self._user:
            if self._user is not None:
                index.remove(self._user, session_id)
            if user is not None:
                index.add(user, session_id, self._index_score())

    def _payload(self, key: str) -> bytes:
        value = self._data[key]
        if value is _PENDING:
            return self._loaded_payloads[key]
        payload: bytes = self._factory.serializer.dumps(value)
        return payload

    def _changed_in_place(self, key: str, value: Any) -> bytes | None:
        """The new payload of a loaded, read value if it changed, else None."""
        if not (self._changed_all or self._factory.detect_changes):
            return None
        if type(value) in _IMMUTABLE:
            return None
        loaded = self._loaded_payloads[key]
        payload: bytes = self._factory.serializer.dumps(value)
        if payload == loaded:
            return None
        # Bytes differ, yet the value may not (a set pickles in hash order,
        # which differs between processes): compare the values themselves.
        if self._factory.serializer.loads(loaded) == value:
            return None
        return payload

    def _delta(self) -> tuple[dict[bytes, bytes], list[bytes]]:
        """Payloads of the fields to set, and the fields to delete. Only keys
        this request wrote or deserialized can have changed."""
        if self._checked_delta is not None:  # worked out by _check_size
            delta, self._checked_delta = self._checked_delta, None
            return delta
        dumps = self._factory.serializer.dumps
        loaded = self._loaded_payloads
        changes: dict[bytes, bytes] = {}
        deleted: list[bytes] = []
        for key in self._touched:
            if key in self._data:
                written: bytes = dumps(self._data[key])
                if written != loaded.get(key):
                    changes[field_name(key)] = written
            elif key in loaded:
                deleted.append(field_name(key))
        for key in self._decoded:
            if key not in self._touched and key in self._data:
                payload = self._changed_in_place(key, self._data[key])
                if payload is not None:
                    changes[field_name(key)] = payload
        for field, message in self._flash_added.items():
            changes[field] = dumps(message)
        deleted.extend(self._flash_removed)
        if self._timeout_changed:
            changes[TIMEOUT] = str(self._timeout or 0).encode()
        for field in self._reseal:
            if field not in changes and field not in deleted:
                changes[field] = self._stored_payload(field)
        return changes, deleted

    def _stored_payload(self, field: bytes) -> bytes:
        """The payload of a loaded field that is written again as it was."""
        if field == CREATED:
            return repr(self._created).encode()
        if field == TIMEOUT:
            return str(self._timeout or 0).encode()
        if field == USER:
            assert self._user is not None  # loaded with the field
            return user_payload(self._user)
        if field == USER_DETAILS:
            assert self._user_details is not None
            return self._user_details
        if field.startswith(FLASH):
            return self._flash_payloads[field]
        if field[:1] == RESERVED:
            return self._later_payloads[field]
        # The bytes loaded, not the value serialized again: with
        # detect_changes off, a change in place is saved only after changed().
        return self._loaded_payloads[key_name(field)]

    def _all_fields(self, seal: SessionSeal) -> list[bytes]:
        """Every field of this session, for a new key (flat)."""
        fields = [CREATED, seal.seal(CREATED, repr(self._created).encode())]
        if self._own_timeout:
            fields += [TIMEOUT, seal.seal(TIMEOUT, str(self._timeout or 0).encode())]
        for key in self._data:
            field = field_name(key)
            fields += [field, seal.seal(field, self._payload(key))]
        for field, payload in self._flash_payloads.items():
            if field not in self._flash_removed:
                fields += [field, seal.seal(field, payload)]
        for field, payload in self._later_payloads.items():
            fields += [field, seal.seal(field, payload)]
        for field, message in self._flash_added.items():
            payload = self._factory.serializer.dumps(message)
            fields += [field, seal.seal(field, payload)]
        user, details = self._binding()
        if user is not None:
            fields += [USER, seal.seal(USER, user_payload(user))]
            if details is not None:
                fields += [USER_DETAILS, seal.seal(USER_DETAILS, details)]
        return fields

    def _create(self) -> Any:
        """Store this session under a new id: its id, or ``_ENDED`` when it
        was to move from a session that ended meanwhile.

        The keys of ended sessions are deleted in the same round trip, even
        if the create then fails: the user asked for them to end. A move
        (``_claim``) is claimed, then committed (:meth:`RedisStore.move`).
        """
        store = self._get_store()
        if self._claim is not None and self._doomed:  # pragma: no cover
            # Not reached: ending a session ends its move too (_doom_key).
            store.delete(*self._doomed, index=self._index_changes().updates)
            self._doomed.clear()
            self._unindex.clear()
        replacing = tuple(self._doomed)
        user = self._binding()[0]
        for _ in range(_CREATE_TRIES):
            session_id = self.session_id
            fields = self._all_fields(self._seal_for(session_id))
            if self._claim is None:
                index = self._index_changes()
                if user is not None:
                    index.add(user, session_id, self._index_score())
                created = store.create(
                    session_id, fields, self._ttl(), replacing, index=index.updates
                )
                replacing = ()  # deleted by the first try
            else:
                index = self._move_index_changes(session_id, user)
                moved = store.move(
                    self._claim, session_id, fields, self._ttl(), index=index.updates
                )
                if moved == GONE:
                    log.info(
                        "session %s ended during the request; its move to a "
                        "new id is dropped",
                        self._describe_claim(),
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

    def _move_index_changes(self, session_id: str, user: str | None) -> IndexChanges:
        """The index updates of a move, applied only if it commits: the old
        id's entry out, the new one's in."""
        index = IndexChanges(
            self._factory.prefix, self._factory.absolute_timeout is not None
        )
        old = self._regenerated_from
        if self._user is not None and old is not None:
            index.remove(self._user, old)
        if user is not None:
            index.add(user, session_id, self._index_score())
        return index

    def _describe_claim(self) -> str:
        """Name the key a move comes from in logs."""
        if self._regenerated_from is not None:
            return self._describe(self._regenerated_from)
        assert self._claim is not None
        return self._describe_legacy(self._claim)

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
        return self._created

    @property
    def new(self) -> bool:
        """True when the session was created by this request."""
        self._load()
        return not self._from_redis

    @property
    def timeout(self) -> int | None:
        """This session's timeout in seconds (``None``: no expiry)."""
        self._load()
        return self._timeout

    def invalidate(self) -> None:
        """End the session: its key is deleted and this object is empty and
        new; anything written to it afterwards starts a new session."""
        old = self._current_id()
        if old is None:
            old, self._regenerated_from = self._regenerated_from, None
        if old is not None:
            self._doom(old)
            self._invalidated.append(old)
            if self._user is not None:
                self._unindex.append((self._user, old))
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

    @_writes
    def changed(self) -> None:
        """Mark the session changed: values read by this request are saved
        even when they were changed in place with ``detect_changes`` off."""
        self._changed_all = True

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
        self._timeout = timeout_seconds or None
        self._own_timeout = self._timeout_changed = self._dirty = True

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
        self._bind = (user, payload)
        self._dirty = True

    @property
    def bound_user(self) -> str | None:
        """The user this session is indexed under, as of its last save or
        this request's :meth:`bind_user`; ``None`` if it is under nobody.

        .. versionadded:: 2.0
        """
        self._load()
        return self._binding()[0]

    def user_sessions(self) -> UserSessions:
        """A :class:`~pyramid_redis_sessions.users.UserSessions` on this
        request's store that knows which session is this one (its
        ``current_handle``, and ``current`` in the listing).

        .. versionadded:: 2.0
        """
        return UserSessions.from_store(
            self._factory, self._get_store(), self._current_id()
        )

    @property
    def loaded_keys(self) -> list[str]:
        """The keys this request's load found in Redis (none before the
        load, nor after :meth:`invalidate`); asking loads nothing. For tools
        such as the debug-toolbar panel.

        .. versionadded:: 2.0
        """
        return list(self._loaded_payloads)

    @property
    def decoded_keys(self) -> list[str]:
        """The loaded keys this request has deserialized so far, in order.

        .. versionadded:: 2.0
        """
        return list(self._decoded)

    def _current_id(self) -> str | None:
        """The id of the stored session, without loading it."""
        return self._stored_id if self._loaded else self._cookie.session_id

    # -- flash and CSRF --------------------------------------------------

    def _queue(self, queue: str) -> dict[bytes, Any]:
        """The messages of a flash queue by field, oldest first."""
        self._load()
        if self._flash is None:
            flash: dict[str, dict[bytes, Any]] = {}
            try:
                for field in sorted(self._flash_payloads):
                    message = self._factory.serializer.loads(
                        self._flash_payloads[field]
                    )
                    flash.setdefault(flash_queue(field), {})[field] = message
            except Exception as e:  # a serializer may raise anything
                self._fail_decoding(e)
                flash = {}
            self._flash = flash
        return self._flash.setdefault(queue, {})

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Add a message to a flash queue. Each message is a field of its own,
        so messages flashed by concurrent requests are all kept."""
        messages = self._queue(queue)
        if not allow_duplicate and msg in messages.values():
            return
        field = _flash_field(queue)
        messages[field] = self._flash_added[field] = msg
        self._dirty = True

    def pop_flash(self, queue: str = "") -> list[Any]:
        """Remove and return the messages of a flash queue."""
        messages = self._queue(queue)
        popped = list(messages.values())
        for field in messages:
            if self._flash_added.pop(field, _MISSING) is _MISSING:
                self._flash_removed.add(field)
        messages.clear()
        return popped

    def peek_flash(self, queue: str = "") -> list[Any]:
        """Return the messages of a flash queue, leaving them there."""
        return list(self._queue(queue).values())

    def new_csrf_token(self) -> str:
        """Make, store and return a new CSRF token (Pyramid's default CSRF
        policy calls this)."""
        token = secrets.token_hex(20)
        self[_CSRF_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        """The session's CSRF token, made on first use."""
        token = self.get(_CSRF_KEY)
        if token is None:
            token = self.new_csrf_token()
        return str(token)

    # -- the dict --------------------------------------------------------

    @_reads
    def __getitem__(self, key: str) -> Any:
        value = self._value(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    @_reads
    def get(self, key: str, default: Any = None) -> Any:
        value = self._value(key)
        return default if value is _MISSING else value

    @_reads
    def __contains__(self, key: object) -> bool:
        return key in self._data

    @_reads
    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    @_reads
    def __len__(self) -> int:
        return len(self._data)

    @_reads
    def keys(self) -> KeysView[str]:
        return self._data.keys()

    @_reads
    def values(self) -> ValuesView[Any]:
        self._decode_all()
        return self._data.values()

    @_reads
    def items(self) -> ItemsView[str, Any]:
        self._decode_all()
        return self._data.items()

    @_reads
    def copy(self) -> dict[str, Any]:
        self._decode_all()
        return self._data.copy()

    @_reads
    def __eq__(self, other: object) -> bool:
        self._decode_all()
        if isinstance(other, RedisSession):
            other._load()
            other._decode_all()
            return self._data == other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self._loaded:
            return f"<{type(self).__name__} (not loaded)>"
        return f"<{type(self).__name__} keys={sorted(map(str, self._data))!r}>"

    @_writes
    def __setitem__(self, key: str, value: Any) -> None:
        self._data[_check_key(key)] = value
        self._touched.add(key)

    @_writes
    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._touched.add(key)

    @_writes
    def setdefault(self, key: str, default: Any = None) -> Any:
        value = self._value(key)
        if value is _MISSING:
            self[key] = value = default
        return value

    @_writes
    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        for key, value in dict(other, **kwargs).items():
            self[key] = value

    @_writes
    def clear(self) -> None:
        """Remove every key; the fields this request saw are deleted."""
        self._touched.update(self._data)
        self._data.clear()

    @_writes
    def popitem(self) -> tuple[str, Any]:
        if not self._data:
            raise KeyError("popitem(): session is empty")
        key = next(reversed(self._data))
        value = self._value(key)
        if value is _MISSING:
            raise KeyError("popitem(): session is empty")
        del self[key]
        return key, value

    @_reads
    def pop(self, key: str, default: Any = _MISSING) -> Any:
        value = self._value(key)
        if value is not _MISSING:
            del self[key]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default
