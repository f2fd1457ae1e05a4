"""The session's dict behaviour, on top of its keys (:class:`.contents.Keys`).

:class:`SessionMapping` is the base of
:class:`~pyramid_redis_sessions.session.RedisSession`: every method loads
the session first (:meth:`SessionMapping._load`, the session's), a method
that writes marks it dirty, and a value that will not deserialize ends the
session as a bad stored value does (:meth:`SessionMapping._fail_decoding`),
after which the session is new and empty. A new session reads the shared,
read-only :data:`~.contents.NO_KEYS` until its first change gives it keys
of its own (:meth:`SessionMapping._own`). Flash messages and CSRF tokens,
the rest of Pyramid's ``ISession``, are here too.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from typing import Any, Concatenate, ParamSpec, TypeVar

from .contents import MISSING, NO_KEYS, PENDING, DecodeError, Keys
from .flash import FlashQueues
from .values import CSRF_KEY

__all__ = ["SessionMapping", "reads", "writes"]

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound="SessionMapping")


def reads(
    method: Callable[Concatenate[M, P], R],
) -> Callable[Concatenate[M, P], R]:
    """A method that needs the session loaded."""

    @functools.wraps(method)
    def wrapper(self: M, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self._loaded:
            self._load()
        return method(self, *args, **kwargs)

    return wrapper


def writes(
    method: Callable[Concatenate[M, P], R],
) -> Callable[Concatenate[M, P], R]:
    """A method that changes the session: loaded first, then saved."""

    @functools.wraps(method)
    def wrapper(self: M, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self._loaded:
            self._load()
        if self._keys is NO_KEYS:
            self._own()
        self._dirty = True
        return method(self, *args, **kwargs)

    return wrapper


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__}")
    return key


class SessionMapping:
    """A ``dict``'s methods over :attr:`_keys`. Keys are ``str``."""

    _keys: Keys
    _loaded: bool
    _dirty: bool

    def _load(self) -> None:
        """Load the session, once (the subclass's)."""
        raise NotImplementedError

    def _fail_decoding(self, error: BaseException) -> None:
        """A loaded value did not deserialize (the subclass's)."""
        raise NotImplementedError

    def _own(self) -> None:
        """Give the session keys of its own instead of the shared, read-only
        :data:`~.contents.NO_KEYS` (the subclass's); called before a change,
        and before a view of the keys is handed out."""
        raise NotImplementedError

    def _value(self, key: str) -> Any:
        """The value of ``key``, or ``MISSING``. A value that will not
        deserialize ends the session as a bad stored value does: the
        session starts afresh and ``MISSING`` is returned."""
        try:
            return self._keys.value(key)
        except DecodeError as e:
            self._fail_decoding(e.__cause__ or e)
            return MISSING

    def _decode_all(self) -> None:
        try:
            self._keys.decode_all()
        except DecodeError as e:
            self._fail_decoding(e.__cause__ or e)

    #: Where this request's load found the session: ``"local cache"`` (no
    #: round trip), ``"redis"``, or ``None`` (not loaded, or not found).
    #: For tools such as the debug-toolbar panel.
    #:
    #: .. versionadded:: 2.0
    loaded_from: str | None = None

    @property
    def loaded_keys(self) -> list[str]:
        """The keys this request's load found in Redis (none before the
        load, nor after :meth:`invalidate`); asking loads nothing. For tools
        such as the debug-toolbar panel.

        .. versionadded:: 2.0
        """
        return list(self._keys.loaded)

    @property
    def decoded_keys(self) -> list[str]:
        """The loaded keys this request has deserialized so far, in order.

        .. versionadded:: 2.0
        """
        return list(self._keys.decoded)

    def _queues(self) -> FlashQueues:
        """The flash queues, loaded and decoded (the subclass's)."""
        raise NotImplementedError

    def flash(self, msg: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Add a message to a flash queue. Each message is a field of its own,
        so messages flashed by concurrent requests are all kept."""
        if self._queues().add(msg, queue, allow_duplicate):
            self._dirty = True

    def pop_flash(self, queue: str = "") -> list[Any]:
        """Remove and return the messages of a flash queue."""
        return self._queues().pop(queue)

    def peek_flash(self, queue: str = "") -> list[Any]:
        """Return the messages of a flash queue, leaving them there."""
        return self._queues().peek(queue)

    def new_csrf_token(self) -> str:
        """Make, store and return a new CSRF token (Pyramid's default CSRF
        policy calls this)."""
        token = secrets.token_hex(20)
        self[CSRF_KEY] = token
        return token

    def get_csrf_token(self) -> str:
        """The session's CSRF token, made on first use."""
        token = self.get(CSRF_KEY)
        if token is None:
            token = self.new_csrf_token()
        return str(token)

    # The most used reads are written out (no wrapper, no call for a value
    # already deserialized or missing): every request with a session makes
    # one at least.

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if not self._loaded:
            self._load()
        value = self._keys.data.get(key, MISSING)
        if value is PENDING:
            value = self._value(key)
        return default if value is MISSING else value

    def __contains__(self, key: object) -> bool:
        if not self._loaded:
            self._load()
        return key in self._keys.data

    @reads
    def __iter__(self) -> Iterator[str]:
        return iter(self._keys.data)

    @reads
    def __len__(self) -> int:
        return len(self._keys.data)

    # A view is live: it must see the keys the session will change.

    @reads
    def keys(self) -> KeysView[str]:
        self._own()
        return self._keys.data.keys()

    @reads
    def values(self) -> ValuesView[Any]:
        self._decode_all()  # may start the session anew
        self._own()
        return self._keys.data.values()

    @reads
    def items(self) -> ItemsView[str, Any]:
        self._decode_all()  # may start the session anew
        self._own()
        return self._keys.data.items()

    @reads
    def copy(self) -> dict[str, Any]:
        self._decode_all()
        return self._keys.data.copy()

    @reads
    def __eq__(self, other: object) -> bool:
        self._decode_all()
        if isinstance(other, SessionMapping):
            other._load()
            other._decode_all()
            return self._keys.data == other._keys.data
        return self._keys.data == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self._loaded:
            return f"<{type(self).__name__} (not loaded)>"
        return f"<{type(self).__name__} keys={sorted(map(str, self._keys.data))!r}>"

    @writes
    def __setitem__(self, key: str, value: Any) -> None:
        self._keys.data[_check_key(key)] = value
        self._keys.touched.add(key)

    @writes
    def __delitem__(self, key: str) -> None:
        del self._keys.data[key]
        self._keys.touched.add(key)

    @writes
    def setdefault(self, key: str, default: Any = None) -> Any:
        value = self._value(key)
        if value is MISSING:
            self[key] = value = default
        return value

    @writes
    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        for key, value in dict(other, **kwargs).items():
            self[key] = value

    @writes
    def clear(self) -> None:
        """Remove every key; the fields this request saw are deleted."""
        self._keys.touched.update(self._keys.data)
        self._keys.data.clear()

    @writes
    def popitem(self) -> tuple[str, Any]:
        if not self._keys.data:
            raise KeyError("popitem(): session is empty")
        key = next(reversed(self._keys.data))
        value = self._value(key)
        if value is MISSING:
            raise KeyError("popitem(): session is empty")
        del self[key]
        return key, value

    @reads
    def pop(self, key: str, default: Any = MISSING) -> Any:
        value = self._value(key)
        if value is not MISSING:
            del self[key]
            return value
        if default is MISSING:
            raise KeyError(key)
        return default
