"""Settings: one table that coerces and checks every option.

Each option has a coercer that accepts the value as a Python caller passes
it *or* as an ini file spells it (a string), and returns the value to use.
A coercer raises :class:`ValueError` naming what is allowed; the caller
turns that into a :class:`~pyramid_redis_sessions.exceptions.ConfigurationError`
that names the setting, so a bad value fails at start-up, never per request.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pyramid.path import DottedNameResolver
from pyramid.settings import asbool, aslist, falsey, truthy
from redis.connection import parse_url

from .exceptions import ConfigurationError
from .serializers import Serializer, builtin_serializers
from .values import MAX_SECONDS

__all__ = [
    "DEPRECATED",
    "OPTIONS",
    "PREFIX",
    "SettingsOptions",
    "coerce_option",
    "settings_options",
]

#: The prefix of this package's settings in an ini file.
PREFIX = "redis.sessions."

_NONE_WORDS = frozenset({"", "none", "null"})


def _is_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and value.strip().lower() in _NONE_WORDS
    )


_resolver = DottedNameResolver()


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _nonempty_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _text(value)


def _url(value: Any) -> str | None:
    url = _optional_text(value)
    if url is not None:
        try:
            parse_url(url)  # type: ignore[no-untyped-call]  # redis-py decides validity
        except ValueError as e:
            raise ValueError(f"a redis://, rediss:// or unix:// URL ({e})") from None
    return url


def _text_list(value: Any) -> list[str]:
    items = aslist(value) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(i, str) and i for i in items
    ):
        raise ValueError("a list of non-empty strings")
    return list(items)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in truthy | falsey:
        return bool(asbool(value))
    raise ValueError("true or false")


def _int(value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            value = None
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        top = f" to {maximum}" if maximum is not None else " or more"
        raise ValueError(f"an integer from {minimum}{top}")
    return value


def _expiry(value: Any) -> int | None:
    """Seconds, where 0, ``none`` or empty mean "never"."""
    if _is_none(value):
        return None
    try:
        seconds = _int(value, 0, MAX_SECONDS)
    except ValueError:
        raise ValueError(
            f"a whole number of seconds up to {MAX_SECONDS}, or 0/none for no expiry"
        ) from None
    return seconds or None


def _max_age(value: Any) -> int | None:
    if _is_none(value):
        return None
    try:
        return _int(value, 0)
    except ValueError:
        raise ValueError("a whole number of seconds, or none") from None


def _seconds(value: Any) -> float | None:
    if _is_none(value):
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("a positive number of seconds, or none")
    return float(value)


def _port(value: Any) -> int:
    return _int(value, 1, 65535)


def _db(value: Any) -> int:
    return _int(value, 0)


_HOST_PORT = "host:port entries separated by spaces or newlines (or a list)"


def _host_port(entry: Any) -> tuple[str, int]:
    """``'host:port'`` or ``('host', port)``; IPv6 hosts in brackets."""
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        host, port = entry
    elif isinstance(entry, str):
        host, sep, port = entry.strip().rpartition(":")
        if not sep:
            raise ValueError(f"{_HOST_PORT}; {entry!r} has no port")
        host = host.removeprefix("[").removesuffix("]")
    else:
        raise ValueError(f"{_HOST_PORT}; got {entry!r}")
    try:
        port = _port(port)
    except ValueError:
        raise ValueError(f"{_HOST_PORT}; {entry!r} has a bad port") from None
    if not isinstance(host, str) or not host:
        raise ValueError(f"{_HOST_PORT}; {entry!r} has no host")
    return host, port


def _sentinels(value: Any) -> list[tuple[str, int]] | None:
    """Sentinel addresses: ``'h1:26379 h2:26379'``, or a list of those."""
    if _is_none(value):
        return None
    entries = aslist(value) if isinstance(value, str) else value
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"{_HOST_PORT}; got {value!r}")
    return [_host_port(entry) for entry in entries] or None


def _retries(value: Any) -> int:
    return _int(value, 0)


def _file(value: Any) -> str | None:
    path = _optional_text(value)
    if path is not None and not os.path.isfile(path):
        raise ValueError(f"the path of an existing file; there is none at {path!r}")
    return path


_CERT_REQS = {"none": "none", "optional": "optional", "required": "required"}


def _cert_reqs(value: Any) -> str | ssl.VerifyMode | None:
    """redis-py's ``ssl_cert_reqs``: ``none``, ``optional`` or ``required``."""
    if value is None or value == "":
        return None
    if isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, str) and value.strip().lower() in _CERT_REQS:
        return _CERT_REQS[value.strip().lower()]
    raise ValueError("none, optional or required")


def _samesite(value: Any) -> str | None:
    if value is None or value == "":
        return None
    allowed = {"lax": "Lax", "strict": "Strict", "none": "None"}
    if isinstance(value, str) and value.strip().lower() in allowed:
        return allowed[value.strip().lower()]
    raise ValueError("Lax, Strict, None, or empty for no SameSite attribute")


def _resolve(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _resolver.maybe_resolve(value)
        except (ImportError, ValueError, AttributeError) as e:
            raise ValueError(f"a dotted name that can be imported ({e})") from None
    return value


def _callable(value: Any) -> Callable[..., Any] | None:
    if value is None:
        return None
    obj = _resolve(value)
    if not callable(obj):
        raise ValueError("a callable or the dotted name of one")
    return obj  # type: ignore[no-any-return]


def _object(value: Any) -> Any:
    return None if value is None else _resolve(value)


def _serializer(value: Any) -> Serializer | None:
    if value is None:
        return None
    builtins = builtin_serializers()
    if isinstance(value, str) and value.strip().lower() in builtins:
        return builtins[value.strip().lower()]
    obj = _resolve(value)
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, Serializer):
        raise ValueError(
            "'pickle', 'json', or an object with dumps() and loads() "
            "(or the dotted name of one)"
        )
    return obj


def _classes(value: Any) -> list[type | tuple[str, type]]:
    """Classes, or the dotted names of classes (``module.Class`` or
    ``module:Class``), separated by spaces or newlines; a name is kept with
    its class (as ``(name, class)``)."""
    entries = aslist(value) if isinstance(value, str) else value
    if entries is None:
        return []
    if not isinstance(entries, (list, tuple)):
        raise ValueError("a list of classes or of their dotted names")
    classes: list[type | tuple[str, type]] = []
    for entry in entries:
        try:
            cls = _resolve(entry)
        except ValueError as e:
            raise ValueError(
                f"dotted names of classes; {entry!r} is not: {e}"
            ) from None
        if not isinstance(cls, type):
            raise ValueError(f"dotted names of classes; {entry!r} is not a class")
        classes.append((entry, cls) if isinstance(entry, str) else cls)
    return classes


def _size(value: Any) -> int | None:
    """Bytes, where 0 or none mean "no limit"."""
    if _is_none(value):
        return None
    try:
        return _int(value, 0) or None
    except ValueError:
        raise ValueError("a whole number of bytes, or 0/none for no limit") from None


def _count(value: Any) -> int:
    """A whole number, 0 or more (0 turns the feature off)."""
    try:
        return _int(value, 0)
    except ValueError:
        raise ValueError("a whole number, 0 or more (0: off)") from None


def _slide_interval(value: Any) -> int | None:
    """Seconds, or none for the default (worked out from ``timeout``)."""
    if _is_none(value):
        return None
    try:
        return _int(value, 0, MAX_SECONDS)
    except ValueError:
        raise ValueError(
            "a whole number of seconds (0: slide on every read), or none for "
            "the default"
        ) from None


def _anything(value: Any) -> Any:
    return value


_NO_EFFECT = "deprecated and ignored: session values are stored as bytes. Remove it."
#: Options accepted for 1.x's sake, with the warning they give.
DEPRECATED: Mapping[str, str] = {
    "charset": _NO_EFFECT,
    "errors": _NO_EFFECT,
    "encoding": _NO_EFFECT,
    "encoding_errors": _NO_EFFECT,
}


#: Every option, with the coercer that checks it.
OPTIONS: Mapping[str, Callable[[Any], Any]] = {
    "secret": _nonempty_text,
    "secret_fallbacks": _text_list,
    "timeout": _expiry,
    "absolute_timeout": _expiry,
    "cookie_name": _nonempty_text,
    "cookie_max_age": _max_age,
    "cookie_path": _nonempty_text,
    "cookie_domain": _optional_text,
    "cookie_secure": _bool,
    "cookie_httponly": _bool,
    "cookie_samesite": _samesite,
    "cookie_on_exception": _bool,
    "url": _url,
    "host": _nonempty_text,
    "port": _port,
    "db": _db,
    "username": _optional_text,
    "password": _optional_text,
    "socket_timeout": _seconds,
    "socket_connect_timeout": _seconds,
    "connection_pool": _object,
    "unix_socket_path": _optional_text,
    "sentinels": _sentinels,
    "sentinel_service": _optional_text,
    "sentinel_username": _optional_text,
    "sentinel_password": _optional_text,
    "cluster": _bool,
    "retries": _retries,
    "ssl_ca_certs": _file,
    "ssl_certfile": _file,
    "ssl_keyfile": _file,
    "ssl_cert_reqs": _cert_reqs,
    "client_callable": _callable,
    "serializer": _serializer,
    "serialize": _callable,
    "deserialize": _callable,
    "id_generator": _callable,
    "prefix": _text,
    "detect_changes": _bool,
    "legacy_cookies": _bool,
    "legacy_pickle_allow": _classes,
    "max_session_size": _size,
    "local_cache": _count,
    "local_cache_max_lag": _seconds,
    "slide_interval": _slide_interval,
    "user_key": _optional_text,
    **dict.fromkeys(DEPRECATED, _anything),
}


def coerce_option(name: str, value: Any, label: str) -> Any:
    """Coerce one option, or raise a ConfigurationError naming ``label``."""
    try:
        coercer = OPTIONS[name]
    except KeyError:
        raise ConfigurationError(_unknown(label, name)) from None
    try:
        return coercer(value)
    except ValueError as e:
        raise ConfigurationError(
            f"{label} has a bad value {value!r}: expected {e}"
        ) from None


def _unknown(label: str, name: str) -> str:
    near = difflib.get_close_matches(name, OPTIONS, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"{label} is not a known option of pyramid_redis_sessions{hint}"


class SettingsOptions(NamedTuple):
    """What :func:`settings_options` read."""

    #: The ``redis.sessions.*`` values by option name, as given (the factory
    #: coerces them).
    options: dict[str, Any]
    #: The setting each option came from, for messages.
    keys: dict[str, str]
    #: Warnings to issue: the factory warns once, at the application's line.
    warnings: list[Warning]


def settings_options(settings: Mapping[str, Any]) -> SettingsOptions:
    """The ``redis.sessions.*`` entries of ``settings`` by option name.

    pyramid_session_redis's names are read through :func:`resolve_alias`:
    a renamed one gives our option and a :class:`DeprecationWarning`, an
    ignored one only a warning.

    Raises a ConfigurationError naming the first unknown setting, a fork
    setting we have no equivalent of, an option given under both names, or
    a missing secret.
    """
    options: dict[str, Any] = {}
    keys: dict[str, str] = {}  # option -> the setting that gave it
    notes: list[Warning] = []
    for key, value in settings.items():
        if not key.startswith(PREFIX):
            continue
        name, note = resolve_alias(key[len(PREFIX) :], f"setting {key!r}")
        if note is not None:
            notes.append(note)
        if name is None:
            continue
        if name not in OPTIONS:
            raise ConfigurationError(_unknown(f"setting {key!r}", name))
        if name in keys:
            raise ConfigurationError(
                f"settings {keys[name]!r} and {key!r} both set {name!r}: "
                f"keep {PREFIX + name!r} only"
            )
        keys[name] = key
        options[name] = value
    if "secret" not in options:
        raise ConfigurationError(f"setting {PREFIX + 'secret'!r} is required")
    return SettingsOptions(options, keys, notes)


class Refused(NamedTuple):
    """A pyramid_session_redis setting with no equivalent here, whose
    absence would change what the application does."""

    #: What to do instead.
    advice: str


class Ignored(NamedTuple):
    """A pyramid_session_redis setting with no equivalent here, that is
    safe to ignore: what it tuned, this package does in its own way."""

    #: Why ignoring it is harmless.
    reason: str


#: pyramid_session_redis 1.8.1's setting names that are not also ours (see
#: its ``RedisSessionFactory`` and README), and what each becomes: the name
#: of our option, :class:`Refused` or :class:`Ignored`. Its other settings
#: (``secret``, ``timeout``, ``cookie_*``, ``serialize``, ``prefix``...) have
#: the same names here.
#:
#: .. versionadded:: 2.0
FORK_SETTINGS: Mapping[str, str | Refused | Ignored] = {
    "redis_url": "url",
    "redis_host": "host",
    "redis_port": "port",
    "redis_db": "db",
    "redis_password": "password",
    "redis_socket_timeout": "socket_timeout",
    "redis_connection_pool": "connection_pool",
    "redis_unix_socket_path": "unix_socket_path",
    "redis_client_callable": "client_callable",
    "redis_encoding": Ignored("session values are stored as bytes"),
    "redis_encoding_errors": Ignored("session values are stored as bytes"),
    # Documented in its README, though its factory never accepted it.
    "redis_errors": Ignored("session values are stored as bytes"),
    "cookie_signer": Refused(
        "the cookie is always signed with 'secret' (HMAC-SHA512, checked in "
        "constant time); set 'secret', and 'secret_fallbacks' for older "
        "secrets"
    ),
    "cookie_expires": Refused(
        "a fixed expiry date for the cookie is not supported; set "
        "'cookie_max_age' (seconds) instead"
    ),
    "cookie_comment": Ignored(
        "browsers ignore the cookie Comment attribute (RFC 6265 dropped it)"
    ),
    "func_check_response_allow_cookies": Refused(
        "there is no hook to keep the cookie off a response; the cookie is "
        "only set when a session is created or its id changes, and such "
        "responses carry 'Vary: Cookie'. Do not create or regenerate a "
        "session in views whose responses are cached"
    ),
    "func_invalid_logger": Ignored(
        "invalid cookies and session values are logged at WARNING by the "
        "'pyramid_redis_sessions' loggers; add a logging handler there"
    ),
    "set_redis_ttl": Ignored(
        "sessions always expire through their Redis TTL, set from 'timeout'"
    ),
    "set_redis_ttl_readheavy": Ignored(
        "reading a session and renewing its TTL are always one round trip"
    ),
    "timeout_trigger": Ignored(
        "the TTL is renewed by the read itself, at no extra cost"
    ),
    "python_expires": Ignored(
        "sessions expire through their Redis TTL, not a time stored in them"
    ),
    # In its README's examples, though its factory never accepted it.
    "assume_redis_ttl": Ignored(
        "sessions always expire through their Redis TTL, set from 'timeout'"
    ),
    "deserialized_fails_new": Ignored(
        "a session value that does not load is always treated as no session, and logged"
    ),
    "invalidate_empty_session": Ignored(
        "a request that only reads an absent session creates nothing, and "
        "invalidate() deletes the key and the cookie"
    ),
}


def resolve_alias(name: str, label: str) -> tuple[str | None, Warning | None]:
    """The option that setting ``name`` stands for, and what to warn.

    ``label`` names the setting in messages (``"setting 'redis.sessions.x'"``).

    Returns ``(name, None)`` for a name that is not one of
    pyramid_session_redis's (ours, or unknown: :func:`coerce_option` judges
    it); ``(our_name, DeprecationWarning)`` for one of its names that we
    have under ``our_name``; ``(None, UserWarning)`` for one that is ignored.
    Issue the warning with :func:`warnings.warn`. Raises
    :class:`~pyramid_redis_sessions.exceptions.ConfigurationError` for one
    we have no equivalent of.

    The caller should refuse a setting given under both names.
    """
    entry = FORK_SETTINGS.get(name)
    if entry is None:
        return name, None
    if isinstance(entry, Refused):
        raise ConfigurationError(
            f"{label} is a pyramid_session_redis setting that "
            f"pyramid_redis_sessions has no equivalent of: {entry.advice}. "
            "Remove it."
        )
    if isinstance(entry, Ignored):
        return None, UserWarning(
            f"{label} is a pyramid_session_redis setting that "
            f"pyramid_redis_sessions ignores: {entry.reason}. Remove it."
        )
    return entry, DeprecationWarning(
        f"{label} is pyramid_session_redis's name for the setting "
        f"{PREFIX + entry!r}; rename it. The old name will stop working in "
        "a later release."
    )
