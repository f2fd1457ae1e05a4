"""The session object: a dict that loads lazily and saves once per request.

A request reads top to bottom:

1. :class:`RedisSession` is made when the view first uses
   ``request.session``: the cookie is read and checked, Redis is not.
2. The first read or write loads the session (one ``GETEX``), or starts a
   new one when there is no valid cookie or no live key behind it.
3. Dict work happens in memory; writes mark the session dirty.
4. A response callback, registered once, saves at most once and sets or
   clears the cookie (:meth:`RedisSession._finish`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from zope.interface import implementer

from .exceptions import SessionStoreError
from .values import BadValue

if TYPE_CHECKING:
    from .factory import SessionFactory
    from .store import RedisStore

__all__ = ["RedisSession"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# 1.x's (and Pyramid's) names inside the session dict, kept so that sessions
# written by 1.x keep their flash queues and CSRF token.
_FLASH_PREFIX = "_f_"
_CSRF_KEY = "_csrft_"
_CREATE_TRIES = 3


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


def _envelope_parts(envelope: Any) -> tuple[dict[str, Any], float, int | None]:
    """Check the shape of a loaded 1.x envelope; ``ValueError`` if wrong."""
    if not isinstance(envelope, dict):
        raise ValueError("envelope is not a dict")
    data, created, timeout = (
        envelope.get("managed_dict"),
        envelope.get("created"),
        envelope.get("timeout"),
    )
    if (
        not isinstance(data, dict)
        or not isinstance(created, (int, float))
        or isinstance(created, bool)
        or not (timeout is None or (isinstance(timeout, int) and timeout > 0))
    ):
        raise ValueError("envelope lacks managed_dict, created or timeout")
    return data, float(created), timeout


@implementer(ISession)
class RedisSession:
    """``request.session``: a dict kept in Redis.

    Made by the factory that :func:`~pyramid_redis_sessions.RedisSessionFactory`
    returns; applications do not make sessions themselves.
    """

    def __init__(self, request: Request, factory: SessionFactory) -> None:
        self._request = request
        self._factory = factory
        self._cookie = factory.cookie.read(request)
        self._store: RedisStore | None = None
        self._loaded = False
        self._registered = False
        self._doomed: list[str] = []  # keys to delete when the response goes
        self._start()

    def _start(self) -> None:
        """Become a new, empty session that is not stored anywhere yet."""
        self._data: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}  # envelope fields of other writers
        self._created = time.time()
        self._timeout = self._factory.timeout
        self._id: str | None = None  # the id to save under; made when needed
        self._stored_id: str | None = None  # the id whose key holds us now
        self._loaded_payload: bytes | None = None  # None: not from Redis
        self._dirty = False

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

    def _load_stored(self, session_id: str) -> None:
        f = self._factory
        try:
            value = self._get_store().load(session_id, f.timeout)
            if value is None:
                return  # expired or invalidated: the id is not reused
            payload, current = f.values.open(session_id, value)
        except BadValue as e:
            self._reject(session_id, str(e))
            return
        try:
            envelope = f.serializer.loads(payload)
            data, created, timeout = _envelope_parts(envelope)
        except Exception as e:  # a serializer may raise anything on bad bytes
            self._reject(session_id, f"{type(e).__name__} while deserializing")
            return
        absolute = f.absolute_timeout
        if absolute is not None and created + absolute <= time.time():
            self._doomed.append(session_id)
            return
        self._data = data
        self._extra = {
            k: v
            for k, v in envelope.items()
            if k not in ("managed_dict", "created", "timeout")
        }
        self._created = created
        self._timeout = timeout
        self._id = self._stored_id = session_id
        self._loaded_payload = payload
        self._dirty = not current  # reseal what a fallback secret sealed

    def _reject(self, session_id: str, reason: str) -> None:
        log.warning(
            "session value at %s could not be loaded (%s); starting a new session",
            self._describe(session_id),
            reason,
        )
        self._doomed.append(session_id)

    def _describe(self, session_id: str) -> str:
        """Name a key in logs without its id, which is a bearer secret."""
        digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:12]
        return f"{self._factory.prefix}<sha256:{digest}>"

    def _ttl(self) -> int | None:
        ttl = self._timeout
        absolute = self._factory.absolute_timeout
        if absolute is not None:
            left = max(1, math.ceil(self._created + absolute - time.time()))
            ttl = left if ttl is None else min(ttl, left)
        return ttl

    # -- saving ----------------------------------------------------------

    def _finish(self, request: Request, response: Response) -> None:
        """Response callback: save at most once, then set or clear the cookie."""
        # getattr: pyramid.testing.DummyRequest has no ``exception``.
        failed = getattr(request, "exception", None) is not None
        if failed and not self._factory.cookie_on_exception:
            return
        vary = response.vary or ()
        if "Cookie" not in vary:
            response.vary = (*vary, "Cookie")
        live_id = self._save()
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

    def _save(self) -> str | None:
        """Apply this request's changes in one round trip at most.

        Returns the id of the session that lives in Redis afterwards.
        """
        payload = self._payload_to_write()
        if payload is not None:
            if self._stored_id is None:
                return self._create(payload)
            value = self._factory.values.seal(self._stored_id, payload)
            if self._get_store().save(self._stored_id, value, self._ttl()):
                return self._stored_id
            log.info(
                "session %s ended during the request; its changes are dropped",
                self._describe(self._stored_id),
            )
            return None
        if self._doomed:
            self._get_store().delete(*self._doomed)
        elif self._stored_id is not None and self._ttl() != self._factory.timeout:
            # The load slid the TTL to the default; this session's differs.
            self._get_store().touch(self._stored_id, self._ttl())
        return self._stored_id

    def _payload_to_write(self) -> bytes | None:
        """The bytes to save, or ``None`` when nothing changed."""
        if self._dirty:
            return self._dump()
        loaded = self._loaded_payload
        if loaded is None or not self._factory.detect_changes:
            return None
        payload = self._dump()
        if payload == loaded:
            return None
        # Bytes differ, yet the data may not (a set pickles in hash order,
        # which differs between processes): compare the values themselves.
        before = self._factory.serializer.loads(loaded)
        return None if before.get("managed_dict") == self._data else payload

    def _dump(self) -> bytes:
        envelope = {
            **self._extra,
            "managed_dict": self._data,
            "created": self._created,
            "timeout": self._timeout,
        }
        payload: bytes = self._factory.serializer.dumps(envelope)
        return payload

    def _create(self, payload: bytes) -> str:
        store = self._get_store()
        replacing = tuple(self._doomed)
        for _ in range(_CREATE_TRIES):
            session_id = self.session_id
            value = self._factory.values.seal(session_id, payload)
            if store.create(session_id, value, self._ttl(), replacing):
                self._stored_id = session_id
                return session_id
            replacing = ()  # deleted by the first try
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
        return self._created

    @property
    def new(self) -> bool:
        """True when the session was created by this request."""
        self._load()
        return self._loaded_payload is None

    @property
    def timeout(self) -> int | None:
        """This session's timeout in seconds (``None``: no expiry)."""
        self._load()
        return self._timeout

    def invalidate(self) -> None:
        """End the session: its key is deleted and this object is empty and
        new; anything written to it afterwards starts a new session."""
        old = self._stored_id if self._loaded else self._cookie.session_id
        if old is not None:
            self._doomed.append(old)
        self._loaded = True
        self._register()
        self._start()

    def regenerate_id(self) -> None:
        """Move the data to a new session id and delete the old key.

        Call it when privileges change (at login) so that an id planted in
        the browser beforehand is worth nothing afterwards.
        """
        self._load()
        if self._stored_id is not None:
            self._doomed.append(self._stored_id)
            self._stored_id = None
            self._dirty = True
        self._id = None

    @_writes
    def changed(self) -> None:
        """Mark the session changed, so that it is saved."""

    def adjust_timeout_for_session(self, timeout_seconds: int | None) -> None:
        """Give this session its own timeout (``None`` or 0: no expiry)."""
        if timeout_seconds is not None and (
            not isinstance(timeout_seconds, int)
            or isinstance(timeout_seconds, bool)
            or timeout_seconds < 0
        ):
            raise ValueError("timeout_seconds must be a whole number >= 0 or None")
        self._load()
        self._timeout = timeout_seconds or None
        self._dirty = True

    # -- flash and CSRF --------------------------------------------------

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        storage = self.setdefault(_FLASH_PREFIX + queue, [])
        if allow_duplicate or msg not in storage:
            storage.append(msg)

    def pop_flash(self, queue: str = "") -> list[Any]:
        messages: list[Any] = self.pop(_FLASH_PREFIX + queue, [])
        return messages

    def peek_flash(self, queue: str = "") -> list[Any]:
        messages: list[Any] = self.get(_FLASH_PREFIX + queue, [])
        return messages

    def new_csrf_token(self) -> str:
        token = secrets.token_hex(20)
        self[_CSRF_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        token = self.get(_CSRF_KEY)
        if token is None:
            token = self.new_csrf_token()
        return str(token)

    # -- the dict --------------------------------------------------------

    @_reads
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    @_reads
    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

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
        return self._data.values()

    @_reads
    def items(self) -> ItemsView[str, Any]:
        return self._data.items()

    @_reads
    def copy(self) -> dict[str, Any]:
        return self._data.copy()

    @_reads
    def __eq__(self, other: object) -> bool:
        if isinstance(other, RedisSession):
            other._load()
            return self._data == other._data
        return self._data == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self._loaded:
            return f"<{type(self).__name__} (not loaded)>"
        return f"<{type(self).__name__} keys={sorted(map(str, self._data))!r}>"

    @_writes
    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    @_writes
    def __delitem__(self, key: str) -> None:
        del self._data[key]

    @_writes
    def setdefault(self, key: str, default: Any = None) -> Any:
        return self._data.setdefault(key, default)

    @_writes
    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        self._data.update(other, **kwargs)

    @_writes
    def clear(self) -> None:
        self._data.clear()

    @_writes
    def popitem(self) -> tuple[str, Any]:
        return self._data.popitem()

    _MISSING: Any = object()

    @_reads
    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._data:
            self._dirty = True
            return self._data.pop(key)
        if default is RedisSession._MISSING:
            raise KeyError(key)
        return default
