"""Cookies and stored sessions of the packages this one replaces.

An application that swaps ``pyramid_redis_sessions`` 1.0.1 or
``pyramid_session_redis`` 1.8.1 for this package keeps its users' sessions:
the session recognises their cookies by format alone and loads the value
the old package stored, then moves it to the new format. This module is the
pure part of that path, with no Redis and no request:

* :meth:`LegacyCookies.read` tells whether a cookie value is one of theirs,
  signed with ``secret`` or one of ``secret_fallbacks``, and if so returns
  the old Redis key it names;
* :func:`decode_value` turns the bytes stored under that key into one
  :class:`LegacySession`.

The formats, as the two packages wrote them:

============================  ===============================================
1.0.1 cookie                  Pyramid 1.x ``signed_serialize`` of the Redis
                              key: 40 lowercase hex digits of HMAC-SHA1 over
                              the pickle of the key (keyed with the secret's
                              Latin-1 bytes, or UTF-8 when Latin-1 cannot
                              encode it), then standard base64 of that pickle.
                              The key already carries 1.x's ``prefix``.
pyramid_session_redis cookie  WebOb ``SignedSerializer(secret,
                              "pyramid_session_redis.", "sha512")`` over the
                              key's UTF-8 bytes: URL-safe base64, unpadded,
                              of 64 bytes of HMAC-SHA512 and then the key.
1.0.1 value                   pickle of ``{"managed_dict": data,
                              "created": float, "timeout": int}``.
pyramid_session_redis value   pickle of ``{"m": data, "c": int, "v": 1}``
                              and, when set, ``"t"`` (timeout) and ``"x"``
                              (an expiry time, ignored: the Redis TTL is the
                              session's lifetime).
============================  ===============================================

Both packages kept flash queues and the CSRF token inside the data, under
``"_f_" + queue`` and ``"_csrft_"``; :func:`decode_value` takes them out.

Threat model
------------

A cookie is client input. Reading one never raises, never touches Redis,
and never runs code: a 1.0.1 cookie is unpickled only after its HMAC has
verified in constant time, and even then by an unpickler that refuses
every global, so that nothing but builtin containers and scalars can come
out of it; anything but a non-empty ``str`` is refused. Someone who has
seen the secret could still sign a cookie, but could not make it do more
than name a Redis key. A pyramid_session_redis cookie is not a pickle at
all.

A stored legacy value is an *unsigned* pickle: anyone able to write to
Redis could put a pickle there that runs code when loaded. So a legacy
value is only ever read under a key named by a legacy cookie that
:meth:`LegacyCookies.read` verified with the secret, never for a new-format
cookie (the new format signs every stored field), and it is unpickled by
:class:`RestrictedLoads`: only the globals that the types sessions keep
need (builtin containers and scalars, :mod:`datetime`, :class:`~decimal.Decimal`,
:class:`~uuid.UUID`, :mod:`collections`' containers) and the classes the
application names in ``legacy_pickle_allow`` may appear; any other refuses
the whole value. What remains for an attacker who can write to Redis and
overwrites the value of a live legacy session is to put other data of
those types in it; it ends when ``legacy_cookies`` is turned off, which
the upgrade notes advise once one ``timeout`` has passed.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import copyreg
import datetime
import decimal
import enum
import hashlib
import hmac
import io
import math
import pickle
import re
import reprlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from webob.cookies import SignedSerializer

from .exceptions import BadLegacyValue
from .limits import MAX_COOKIE_SIZE
from .values import MAX_SECONDS, BadValue, parse_created

__all__ = [
    "SAFE_GLOBALS",
    "BadLegacyValue",
    "LegacyCookie",
    "LegacyCookies",
    "LegacyKind",
    "LegacySession",
    "RefusedGlobal",
    "RestrictedLoads",
    "decode_value",
]

#: pyramid_session_redis's cookie salt and digest, as its factory sets them.
FORK_SALT = "pyramid_session_redis."
FORK_HASHALG = "sha512"

_FLASH_PREFIX = "_f_"
_CSRF_KEY = "_csrft_"
_SIG_LENGTH = 40  # hex digits of an SHA-1 HMAC
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{40}")
_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]+")


class LegacyKind(enum.Enum):
    """The package that wrote a legacy cookie, and so its stored value."""

    #: ``pyramid_redis_sessions`` 1.0.1 (and earlier 1.x).
    REDIS_SESSIONS_1 = "pyramid_redis_sessions 1.0.1"
    #: ``pyramid_session_redis`` 1.8.1 (its format since 1.5.1).
    SESSION_REDIS = "pyramid_session_redis 1.8.1"


@dataclass(frozen=True)
class LegacyCookie:
    """A legacy cookie whose signature verified."""

    kind: LegacyKind
    #: The Redis key of the old session, exactly as the cookie names it (the
    #: old prefix included). Kept out of ``repr``: it is a bearer secret.
    redis_key: str = field(repr=False)
    #: True when only one of ``secret_fallbacks`` verified it.
    fallback: bool


@dataclass(frozen=True)
class LegacySession:
    """One legacy session, decoded. ``repr`` shows no data."""

    #: The session data, without the flash queues and the CSRF token.
    data: dict[str, Any] = field(repr=False)
    #: When the session was created, in seconds since the epoch.
    created: float
    #: The session's own timeout in seconds; ``None`` for no expiry.
    timeout: int | None
    #: Flash queues by name (``""`` is the default queue), oldest first.
    flash: dict[str, list[Any]] = field(repr=False)
    #: The CSRF token, if the session had one.
    csrf_token: str | None = field(repr=False)
    #: ``repr()`` of each key dropped because it was not a ``str``, for the
    #: log: the new format names each stored field by its key.
    dropped_keys: tuple[str, ...] = ()


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Loads builtin containers and scalars only.

    Every way a pickle reaches code goes through a global (GLOBAL,
    STACK_GLOBAL and the copyreg EXT opcodes all call :meth:`find_class`)
    or through a persistent id; both are refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name} refused")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent id refused")


class RefusedGlobal(pickle.UnpicklingError):
    """A legacy pickle names a global that :class:`RestrictedLoads` does
    not allow. ``name`` is ``module.name`` as the pickle spells it.

    .. versionadded:: 2.0
    """

    def __init__(self, module: str, name: str) -> None:
        self.name = f"{module}.{name}"
        super().__init__(f"global {_name_repr.repr(self.name)} refused")


def _no_amplification(make: type) -> Callable[..., Any]:
    """``bytes``/``bytearray`` as a pickle may call them, but never with a
    size (``bytearray(10**12)`` from a few bytes of pickle): no pickle the
    old packages wrote does that. A function, not the type, so that
    ``NEWOBJ`` and ``copyreg`` cannot reach the type's own ``__new__``."""

    def call(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{make.__name__}() of a size refused")
        return make(*args)

    return call


def _latin1_encode(text: Any, encoding: Any = None, errors: Any = None) -> bytes:
    """``_codecs.encode``, as pickle protocols 0 to 2 call it for bytes
    (Latin-1 text to bytes), and only so: no other codec is reachable."""
    if type(text) is not str or encoding != "latin1" or errors is not None:
        raise pickle.UnpicklingError("_codecs.encode refused but for latin1")
    return text.encode("latin-1")


def _object_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` as protocols 0 and 1 call it for classes
    without a ``__reduce__`` of their own (``uuid.UUID``): ``object`` as the
    base only, so that no type's ``__init__`` is called with pickled data."""
    if base is not object:
        raise pickle.UnpicklingError("copyreg._reconstructor refused but for object")
    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


#: What a legacy pickle may name, by ``(module, name)``: what pickles of
#: the types sessions keep need, with protocols 0 to 5 (Python 3's names;
#: Python 2's ``__builtin__`` and ``copy_reg`` are read as these).
SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        ("builtins", t.__name__): t
        for t in (dict, list, tuple, set, frozenset, str, int, float, complex, bool)
    },
    ("builtins", "bytes"): _no_amplification(bytes),
    ("builtins", "bytearray"): _no_amplification(bytearray),
    # For copyreg._reconstructor's base; object() itself holds nothing.
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): _object_reconstructor,
    ("_codecs", "encode"): _latin1_encode,
    **{
        ("datetime", t.__name__): t
        for t in (
            datetime.date,
            datetime.time,
            datetime.datetime,
            datetime.timedelta,
            datetime.timezone,
        )
    },
    ("decimal", "Decimal"): decimal.Decimal,
    ("uuid", "UUID"): uuid.UUID,
    **{
        ("collections", t.__name__): t
        for t in (
            collections.OrderedDict,
            collections.defaultdict,
            collections.deque,
            collections.Counter,
        )
    },
}
#: Python 2's module names in old pickles (Python 3 writes them too, for
#: protocols below 3).
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _AllowListUnpickler(pickle.Unpickler):
    """Loads what ``allowed`` names and nothing else: every way a pickle
    reaches code goes through a global (GLOBAL, STACK_GLOBAL and the copyreg
    EXT opcodes all call :meth:`find_class`) or a persistent id."""

    def __init__(self, raw: bytes, allowed: dict[tuple[str, str], Any]) -> None:
        super().__init__(io.BytesIO(raw))
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[_PY2_MODULES.get(module, module), name]
        except (KeyError, TypeError):  # TypeError: not hashable, not a name
            raise RefusedGlobal(str(module), str(name)) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent id refused")


class RestrictedLoads:
    """``loads`` for legacy values: a pickle that may name only
    :data:`SAFE_GLOBALS` and the classes in ``allow`` (the
    ``legacy_pickle_allow`` setting, resolved). Any other global raises
    :class:`RefusedGlobal` before anything is called.

    Each class of ``allow`` is allowed under its own module and qualified
    name, as pickle writes it today; a ``(dotted_name, class)`` pair is also
    allowed under that name (``module.Class`` or ``module:Class``), which
    old pickles may use for a class that has moved since and is still
    imported there.

    .. versionadded:: 2.0
    """

    def __init__(self, allow: Iterable[type | tuple[str, type]] = ()) -> None:
        allowed = dict(SAFE_GLOBALS)
        for entry in allow:
            if isinstance(entry, tuple):
                name, cls = entry
                module, sep, attr = name.partition(":")
                if not sep:
                    module, _, attr = name.rpartition(".")
                allowed[module, attr] = cls
            else:
                cls = entry
            allowed[cls.__module__, cls.__qualname__] = cls
        self._allowed = allowed

    def __call__(self, raw: bytes) -> Any:
        return _AllowListUnpickler(raw, self._allowed).load()


class _KeyBytes:
    """pyramid_session_redis's cookie payload: the key's UTF-8 bytes."""

    def dumps(self, appstruct: str) -> bytes:
        return appstruct.encode("utf-8")

    def loads(self, bstruct: bytes) -> str:
        return bstruct.decode("utf-8")  # UnicodeDecodeError is a ValueError


def _hmac_keys(secret: str) -> list[bytes]:
    """The HMAC keys Pyramid 1.x derived from ``secret``.

    Pyramid 1.5+ on Python 3 used Latin-1 bytes and fell back to UTF-8;
    Python 2 apps passed the ini file's bytes, UTF-8 in practice.
    """
    keys = []
    with contextlib.suppress(UnicodeEncodeError):
        keys.append(secret.encode("latin-1"))
    utf8 = secret.encode("utf-8")
    if utf8 not in keys:
        keys.append(utf8)
    return keys


class LegacyCookies:
    """Recognises and verifies the cookies of both legacy packages.

    ``secret``
      The ``secret`` setting, which the old package used too.

    ``fallbacks``
      The ``secret_fallbacks`` setting: tried after ``secret``. Default:
      none.
    """

    def __init__(self, secret: str, fallbacks: Iterable[str] = ()) -> None:
        secrets = [secret, *fallbacks]
        self._one_x_keys = [
            (index > 0, key) for index, s in enumerate(secrets) for key in _hmac_keys(s)
        ]
        self._fork_signers = [
            (index > 0, SignedSerializer(s, FORK_SALT, FORK_HASHALG, _KeyBytes()))
            for index, s in enumerate(secrets)
        ]

    def read(self, value: str) -> LegacyCookie | None:
        """The legacy cookie in ``value``, or ``None`` if it is not one that
        verifies with the secrets. Never raises."""
        if (
            not isinstance(value, str)
            or not value
            or len(value) > MAX_COOKIE_SIZE
            or not value.isascii()
        ):
            return None
        try:
            return self._read_one_x(value) or self._read_fork(value)
        except Exception:  # client input: whatever went wrong, not a cookie
            return None

    def _read_one_x(self, value: str) -> LegacyCookie | None:
        if not _HEX_SIGNATURE.fullmatch(value, 0, _SIG_LENGTH):
            return None
        signature = value[:_SIG_LENGTH].encode("ascii")
        encoded = value[_SIG_LENGTH:].encode("ascii")
        try:
            pickled = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return None
        if base64.b64encode(pickled) != encoded:  # only what Pyramid wrote
            return None
        for fallback, key in self._one_x_keys:
            expected = hmac.new(key, pickled, hashlib.sha1).hexdigest()
            if hmac.compare_digest(expected.encode("ascii"), signature):
                redis_key = _load_key(pickled)
                if redis_key is None:
                    return None
                return LegacyCookie(LegacyKind.REDIS_SESSIONS_1, redis_key, fallback)
        return None

    def _read_fork(self, value: str) -> LegacyCookie | None:
        # WebOb's base64 decoding would also take "+", "/", padding and
        # stray low bits in the last digit, which the fork never wrote.
        raw = value.encode("ascii")
        if not _URLSAFE_BASE64.fullmatch(value) or raw != _unpadded_urlsafe(raw):
            return None
        for fallback, signer in self._fork_signers:
            try:
                redis_key = signer.loads(raw)
            except ValueError:
                continue
            if not isinstance(redis_key, str) or not redis_key:
                return None
            return LegacyCookie(LegacyKind.SESSION_REDIS, redis_key, fallback)
        return None


def _unpadded_urlsafe(encoded: bytes) -> bytes:
    """``encoded`` as WebOb would have written what it decodes to."""
    decoded = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4))
    return base64.urlsafe_b64encode(decoded).rstrip(b"=")


def _load_key(pickled: bytes) -> str | None:
    """The ``str`` in a verified 1.0.1 cookie's pickle, or ``None``."""
    try:
        loaded = _NoGlobalsUnpickler(io.BytesIO(pickled)).load()
    except Exception:  # any malformed pickle fails in its own way
        return None
    # Python 2's pickled byte strings arrive as str (ASCII) too.
    if type(loaded) is not str or not loaded:
        return None
    return loaded


def decode_value(
    kind: LegacyKind,
    raw: bytes,
    loads: Callable[[bytes], Any] | None = None,
) -> LegacySession:
    """Decode the value stored under a verified legacy cookie's key.

    ``kind``
      :attr:`LegacyCookie.kind` of that cookie.

    ``raw``
      The bytes stored under :attr:`LegacyCookie.redis_key`.

    ``loads``
      The old package's deserializer (its ``deserialize`` setting).
      Default: a :class:`RestrictedLoads` that allows only
      :data:`SAFE_GLOBALS`.

    Only call it for a key that a legacy cookie named and that
    :meth:`LegacyCookies.read` verified with the secret: the value is
    unsigned (see the module's threat model). Keys that are not ``str``
    are dropped and listed in :attr:`LegacySession.dropped_keys`.

    Raises :class:`~pyramid_redis_sessions.exceptions.BadLegacyValue` with
    a short reason, and nothing else, when the value does not load or is not
    in that package's format.
    """
    if not isinstance(raw, bytes):
        raise BadLegacyValue(f"value is {type(raw).__name__}, not bytes")
    try:
        value = (loads or _SAFE_LOADS)(raw)
    except RefusedGlobal as e:
        raise BadLegacyValue(
            f"value names the global {_name_repr.repr(e.name)}, which is not "
            "allowed (add the class to legacy_pickle_allow if it is yours)"
        ) from None
    except Exception as e:
        raise BadLegacyValue(f"value does not load ({type(e).__name__})") from None
    if kind is LegacyKind.REDIS_SESSIONS_1:
        data, created, timeout = _one_x_envelope(value)
    elif kind is LegacyKind.SESSION_REDIS:
        data, created, timeout = _fork_envelope(value)
    else:
        raise BadLegacyValue(f"unknown legacy kind {kind!r}")
    return _split(data, _created(created), _timeout(timeout))


_SAFE_LOADS = RestrictedLoads()
_ONE_X_FIELDS = frozenset({"managed_dict", "created", "timeout"})
_FORK_REQUIRED = frozenset({"m", "c", "v"})
_FORK_FIELDS = _FORK_REQUIRED | {"t", "x"}


def _one_x_envelope(value: Any) -> tuple[Any, Any, Any]:
    if not isinstance(value, dict) or set(value) != _ONE_X_FIELDS:
        raise BadLegacyValue(
            "not a 1.0.1 envelope (a dict of managed_dict, created, timeout)"
        )
    return value["managed_dict"], value["created"], value["timeout"]


def _fork_envelope(value: Any) -> tuple[Any, Any, Any]:
    if not isinstance(value, dict) or not _FORK_REQUIRED <= set(value) <= _FORK_FIELDS:
        raise BadLegacyValue(
            "not a pyramid_session_redis payload (a dict of m, c, v, and t, x)"
        )
    if type(value["v"]) is not int or value["v"] != 1:
        raise BadLegacyValue("pyramid_session_redis payload version is not 1")
    return value["m"], value["c"], value.get("t")


def _created(created: Any) -> float:
    if (
        isinstance(created, bool)
        or not isinstance(created, (int, float))
        or not math.isfinite(created)
        or created < 0
    ):
        raise BadLegacyValue(f"created is a {type(created).__name__}, not a time")
    try:  # a time the new format can store (repr() in digits)
        return parse_created(repr(float(created)).encode())
    except BadValue:
        raise BadLegacyValue("created is out of range") from None


def _timeout(timeout: Any) -> int | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise BadLegacyValue(
            f"timeout is a {type(timeout).__name__}, not whole seconds"
        )
    if timeout > MAX_SECONDS:
        raise BadLegacyValue(f"timeout is over {MAX_SECONDS} seconds")
    return timeout or None


_key_repr = reprlib.Repr()
_key_repr.maxstring = _key_repr.maxother = 40
#: A global's name as a pickle spells it, for the log (it may be anything).
_name_repr = reprlib.Repr()
_name_repr.maxstring = 120


def _split(data: Any, created: float, timeout: int | None) -> LegacySession:
    """Take the flash queues and the CSRF token out of the data."""
    if not isinstance(data, dict):
        raise BadLegacyValue(f"session data is a {type(data).__name__}, not a dict")
    kept: dict[str, Any] = {}
    flash: dict[str, list[Any]] = {}
    csrf_token = None
    dropped = []
    for key, item in data.items():
        if not isinstance(key, str):
            dropped.append(_key_repr.repr(key))
        elif key == _CSRF_KEY:
            if not isinstance(item, str):
                raise BadLegacyValue(
                    f"CSRF token is a {type(item).__name__}, not a str"
                )
            csrf_token = item
        elif key.startswith(_FLASH_PREFIX):
            if not isinstance(item, list):
                raise BadLegacyValue(
                    f"a flash queue is a {type(item).__name__}, not a list"
                )
            flash[key[len(_FLASH_PREFIX) :]] = list(item)
        else:
            kept[key] = item
    return LegacySession(kept, created, timeout, flash, csrf_token, tuple(dropped))
