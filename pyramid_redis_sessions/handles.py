"""Handles: opaque, stable names of sessions that are safe to show.

A session id is a bearer secret: whoever holds it holds the session. Places
that must name a session to a person (the ``psessions`` command's list of
the largest sessions, a user's list of their own sessions) show its handle
instead, and ``psessions show`` and ``end`` accept it: 32 hex digits (128
bits) of an HMAC of the id, keyed from ``secret``::

    key    = HMAC-SHA256(secret.encode("utf-8"), b"pyramid_redis_sessions.handle")
    handle = HMAC-SHA256(key, session_id.encode("utf-8")).hexdigest()[:32]

The key has a salt of its own, so it is neither the key that signs cookies
nor the one that signs stored values. A handle cannot be turned back into
an id, and without the secret no one can compute the handle of an id they
guessed. The same id always has the same handle under the same ``secret``,
so a handle shown by ``psessions stats`` can be matched with one listed by
the user-sessions index; after the secret is rotated, handles change.

With 128 bits, two live sessions of one store sharing a handle is not a
practical concern; even so, the application acts on a session by its handle
only among a known set of ids (one user's sessions,
:meth:`~pyramid_redis_sessions.users.UserSessions.end`), never across the
whole store. ``psessions show`` and ``end``, run by an operator who holds
the secret and the store already, find a handle among every session
(:meth:`~pyramid_redis_sessions.admin.Keyspace.find`: a ``SCAN``, the
handles computed locally) and refuse one that two sessions share.

.. versionadded:: 2.0
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["HANDLE_LENGTH", "Handles", "session_handle"]

_SALT = b"pyramid_redis_sessions.handle"
#: Hex digits in a handle.
HANDLE_LENGTH = 32


class Handles:
    """Derives the handle key from ``secret`` once; calling the object with
    a session id returns that session's handle.

    ``secret``
      The ``secret`` setting (not a fallback: handles are made with the
      current secret only).
    """

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode("utf-8"), _SALT, hashlib.sha256).digest()

    def __call__(self, session_id: str) -> str:
        mac = hmac.new(
            self._key, session_id.encode("utf-8", "surrogatepass"), hashlib.sha256
        )
        return mac.hexdigest()[:HANDLE_LENGTH]


def session_handle(secret: str, session_id: str) -> str:
    """The handle of ``session_id`` under ``secret``. To make many, build
    one :class:`Handles` and call it: the key is then derived once."""
    return Handles(secret)(session_id)
