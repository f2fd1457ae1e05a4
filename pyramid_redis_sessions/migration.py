"""Loading a session that 1.x or pyramid_session_redis stored, to move it.

A verified legacy cookie names a key that holds an unsigned pickle (see
:mod:`pyramid_redis_sessions.legacy`, which decodes it). :func:`load_legacy`
reads it and tells the session what to do: adopt the decoded session (the
save then moves it to a new id in the new format, as ``regenerate_id()``
moves one: the old key deleted once the new one exists), delete the key
(a value that cannot be moved, a session past its absolute deadline), or
nothing (the key is gone). This is the only path that reads a pickle, and
only for a cookie signed with the secret.

The whole legacy path is this module, :mod:`.legacy` and the legacy cookie
reader in :mod:`.cookies`: it can be dropped in one piece one day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .events import describe, key_digest
from .exceptions import BadLegacyValue
from .legacy import LegacyCookie, LegacySession, decode_value
from .serializers import Serializer
from .store import RedisStore
from .values import CSRF_KEY, BadValue

__all__ = ["Migration", "describe_legacy", "describe_move", "load_legacy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """What :func:`load_legacy` found at a legacy key."""

    #: The legacy key (a whole key: it carries its old package's prefix).
    key: str
    #: The session to adopt and move, or ``None``.
    session: LegacySession | None = None
    #: The key's remaining lifetime (whole seconds), which the new key may
    #: not outlive; ``None`` for none.
    ttl: int | None = None
    #: Delete the key when the response goes (it cannot be moved).
    doom: bool = False

    def data(self) -> dict[str, Any]:
        """The session's keys and values, its CSRF token among them under
        Pyramid's key."""
        assert self.session is not None
        data = dict(self.session.data)
        if self.session.csrf_token is not None:
            data[CSRF_KEY] = self.session.csrf_token
        return data


def load_legacy(
    store: RedisStore,
    cookie: LegacyCookie,
    *,
    loads: Callable[[bytes], Any],
    serializer: Serializer,
    prefix: str,
    absolute_timeout: int | None,
) -> Migration:
    """Read and decode the legacy session ``cookie`` names (one round trip).

    ``loads`` reads the values (1.x's ``deserialize``, restricted by
    default); ``serializer`` must be able to store every value, so that the
    move cannot fail in the response callback.
    """
    key = cookie.redis_key
    try:
        raw, ttl = store.load_legacy(key)
    except BadValue as e:  # the key holds another Redis type
        return _reject(key, prefix, str(e))
    if raw is None:
        return Migration(key)  # expired: a fresh session, the cookie cleared
    try:
        legacy = decode_value(cookie.kind, raw, loads)
        _check_serializable(legacy, serializer)
    except BadLegacyValue as e:
        return _reject(key, prefix, str(e))
    if (
        absolute_timeout is not None
        and legacy.created + absolute_timeout <= time.time()
    ):
        return Migration(key, doom=True)  # past its deadline: gone
    if legacy.dropped_keys:
        log.warning(
            "legacy session at %s had keys that are not str, which the new "
            "format cannot store; dropped: %s",
            describe_legacy(prefix, key),
            ", ".join(legacy.dropped_keys),
        )
    return Migration(key, legacy, ttl)


def describe_legacy(prefix: str, key: str) -> str:
    """Name a legacy key in logs: the current prefix if it has it, and a
    digest of the rest, which holds the old session id."""
    if not (prefix and key.startswith(prefix)):
        prefix = ""
    return f"legacy key {prefix}<sha256:{key_digest(key[len(prefix) :])}>"


def describe_move(prefix: str, regenerated_from: str | None, key: str) -> str:
    """Name in logs the session a move comes from: ``regenerated_from``, the
    id ``regenerate_id()`` left, else the legacy ``key``."""
    if regenerated_from is not None:
        return describe(prefix, regenerated_from)
    return describe_legacy(prefix, key)


def _reject(key: str, prefix: str, reason: str) -> Migration:
    log.warning(
        "legacy session value at %s could not be loaded (%s); starting a new session",
        describe_legacy(prefix, key),
        reason,
    )
    return Migration(key, doom=True)


def _check_serializable(legacy: LegacySession, serializer: Serializer) -> None:
    """BadLegacyValue unless ``serializer`` can store every value."""
    try:
        for value in legacy.data.values():
            serializer.dumps(value)
        for messages in legacy.flash.values():
            for message in messages:
                serializer.dumps(message)
    except Exception as e:  # a serializer may raise anything
        raise BadLegacyValue(
            f"{type(e).__name__} while serializing for the new format"
        ) from None
