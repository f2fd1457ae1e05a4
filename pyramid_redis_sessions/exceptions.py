"""Exceptions raised by :mod:`pyramid_redis_sessions`.

Every exception of this package derives from :class:`RedisSessionsError`, so
an application can catch them all with one clause.
"""

from __future__ import annotations

import redis.exceptions
from pyramid.exceptions import ConfigurationError as PyramidConfigurationError

__all__ = [
    "BadLegacyValue",
    "ConfigurationError",
    "RedisSessionsError",
    "SessionStoreError",
    "SessionStoreUnavailable",
    "SessionTooLarge",
]


class RedisSessionsError(Exception):
    """Base class of every exception raised by this package."""


class ConfigurationError(RedisSessionsError, PyramidConfigurationError):  # type: ignore[misc]
    """A setting or factory argument is unknown or has a bad value.

    Raised at start-up, never while serving a request. It is also a
    :class:`pyramid.exceptions.ConfigurationError`.
    """


class SessionStoreError(RedisSessionsError, redis.exceptions.RedisError):
    """Redis answered a session command with an error that does not pass by
    itself (a permission refused, a script error).

    Raised while saving, at the end of a request, it goes through the
    application's exception views all the same; without a view for it, it
    propagates (a 500). The cookie is left as it was.
    """


class SessionStoreUnavailable(SessionStoreError, redis.exceptions.ConnectionError):
    """Redis could not be reached, did not answer within the timeouts, or
    refused for a while: a reply coded ``OOM``, ``NOREPLICAS``, ``READONLY``,
    ``MASTERDOWN``, ``LOADING``, ``BUSY``, ``TRYAGAIN``, ``CLUSTERDOWN`` or
    ``MISCONF``, also when a script's command met it
    (:data:`pyramid_redis_sessions.client.TRANSIENT_CODES`).
    ``config.include('pyramid_redis_sessions')`` answers it with a 503 and
    ``Retry-After``; an application's own exception view for it wins.

    The message names the server (``host:port`` or the socket path). It is
    also a :class:`redis.exceptions.ConnectionError`, so code written against
    redis-py's exceptions keeps working.

    ``server``, when given, is the server alone (as
    :func:`pyramid_redis_sessions.client.describe_server` names it), for
    logs that must not carry anything else.
    """

    def __init__(self, *args: object, server: str | None = None) -> None:
        super().__init__(*args)
        self.server = server


class SessionTooLarge(SessionStoreError):
    """A save would make the session larger in Redis than
    ``max_session_size``; nothing of it was written, and what was stored
    before stays.

    The message names the largest session keys and the bytes each would
    take, never a value or the session id. ``size`` is the bytes the session
    would have taken, ``limit`` the setting, ``largest`` the ``(key,
    bytes)`` pairs of the message, largest first.

    .. versionadded:: 2.0
    """

    def __init__(self, size: int, limit: int, largest: list[tuple[str, int]]) -> None:
        keys = ", ".join(f"{key} ({n} bytes)" for key, n in largest)
        super().__init__(
            f"session not saved: it would take {size} bytes in Redis, over "
            f"max_session_size ({limit}); its largest keys: {keys or 'none'}"
        )
        self.size = size
        self.limit = limit
        self.largest = largest


class BadLegacyValue(RedisSessionsError, ValueError):
    """A session stored by pyramid_redis_sessions 1.0.1 or pyramid_session_redis
    does not load, or is not in that package's format.

    The message is a short reason that names fields and types, never the data.
    It is also a :class:`ValueError`.

    .. versionadded:: 2.0
    """
