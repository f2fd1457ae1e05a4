"""Events the sessions send through Pyramid's registry, for operators to count.

Subscribe with :meth:`pyramid.config.Configurator.add_subscriber`::

    config.add_subscriber(count_created, SessionCreated)

Every event has ``request``. None carries a session id (a bearer
credential) or session data: where a session must be told apart, the event
has ``key_digest``, the first 12 hex digits of the SHA-256 of the id, the
same name the package's log lines use.

When no subscriber of any kind is registered, no event object is built and
:meth:`~pyramid.registry.Registry.notify` is not called: the check is
Pyramid's ``registry.has_listeners``, made once per request.

Created, regenerated and invalidated are sent when the change is applied to
Redis, at the end of the request: a request whose changes are dropped
(``cookie_on_exception = false`` and an exception view answered, or a
session that ended meanwhile) sends none of them.

.. versionadded:: 2.0
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pyramid.request import Request

__all__ = [
    "SessionCreated",
    "SessionEvent",
    "SessionIdRegenerated",
    "SessionInvalidated",
    "SessionValueRejected",
    "StoreUnavailable",
    "key_digest",
]


def key_digest(session_id: str) -> str:
    """The name of a session in events and logs: 12 hex digits of the
    SHA-256 of its id, from which the id cannot be recovered."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class SessionEvent:
    """Base class of every event of this package."""

    #: The request during which it happened.
    request: Request


@dataclass(frozen=True)
class SessionCreated(SessionEvent):
    """A new session was stored: its first write (at login, say), or the
    fresh session written after
    :meth:`~pyramid_redis_sessions.RedisSession.invalidate`."""

    #: :func:`key_digest` of the new session's id.
    key_digest: str


@dataclass(frozen=True)
class SessionIdRegenerated(SessionEvent):
    """A session moved to a new id
    (:meth:`~pyramid_redis_sessions.RedisSession.regenerate_id`), its old key
    deleted."""

    #: :func:`key_digest` of the new id.
    key_digest: str
    #: :func:`key_digest` of the old id.
    old_key_digest: str


@dataclass(frozen=True)
class SessionInvalidated(SessionEvent):
    """A session was ended by
    :meth:`~pyramid_redis_sessions.RedisSession.invalidate` and its key
    deleted."""

    #: :func:`key_digest` of the ended session's id.
    key_digest: str


@dataclass(frozen=True)
class SessionValueRejected(SessionEvent):
    """A stored session did not load (a field whose MAC does not verify,
    bytes the serializer refuses, a key of another Redis type): the request
    got a new, empty session and the bad key is deleted."""

    #: Why, in a few words that name no data (``'a field's MAC does not
    #: verify'``, ``'UnpicklingError while deserializing'``).
    reason: str
    #: :func:`key_digest` of the rejected session's id.
    key_digest: str


@dataclass(frozen=True)
class StoreUnavailable(SessionEvent):
    """Redis could not be reached, or did not answer in time, when the
    request needed the session; the request then fails with
    :class:`~pyramid_redis_sessions.exceptions.SessionStoreUnavailable`
    (a 503 with ``config.include('pyramid_redis_sessions')``)."""

    #: The server as :func:`pyramid_redis_sessions.client.describe_server`
    #: names it (``host:port``, the Sentinel service and master, the
    #: Cluster node).
    server: str


def describe(prefix: str, session_id: str) -> str:
    """Name a session's key in logs without its id, a bearer secret."""
    return f"{prefix}<sha256:{key_digest(session_id)}>"


def _new_id(source_id: str | None, live_id: str | None) -> bool:
    """The save stored a session under an id it was not loaded from."""
    return live_id is not None and live_id != source_id


def has_applied_events(
    source_id: str | None, live_id: str | None, invalidated: list[str]
) -> bool:
    """Whether :meth:`Notifier.applied` has anything to send for these
    arguments: asked first, so that a request without any makes no
    notifier."""
    return bool(invalidated) or _new_id(source_id, live_id)


class Notifier:
    """A request's events: sent only when anyone is subscribed (Pyramid's
    ``registry.has_listeners``, asked once per request)."""

    __slots__ = ("_request", "listening")

    def __init__(self, request: Request) -> None:
        self._request = request
        registry = getattr(request, "registry", None)
        #: Anyone is subscribed to anything (``registry.has_listeners``).
        self.listening = bool(getattr(registry, "has_listeners", False))

    def rejected(self, session_id: str, reason: str) -> None:
        """A stored value of ``session_id`` did not verify or decode."""
        if self.listening:
            digest = key_digest(session_id)
            self._request.registry.notify(
                SessionValueRejected(self._request, reason, digest)
            )

    def unavailable(self, server: str | None) -> None:
        """Redis failed the request."""
        if self.listening:
            event = StoreUnavailable(self._request, server or "server unknown")
            self._request.registry.notify(event)

    def applied(
        self,
        source_id: str | None,
        live_id: str | None,
        regenerated_from: str | None,
        invalidated: list[str],
    ) -> None:
        """The save applied the request's changes: a session created or its
        id regenerated (``live_id`` stored, not loaded from ``source_id``),
        and the sessions it ``invalidated``."""
        if not self.listening:
            return
        request = self._request
        notify = request.registry.notify
        if _new_id(source_id, live_id):
            assert live_id is not None
            if regenerated_from is not None:
                old = key_digest(regenerated_from)
                notify(SessionIdRegenerated(request, key_digest(live_id), old))
            else:
                notify(SessionCreated(request, key_digest(live_id)))
        for ended in invalidated:
            notify(SessionInvalidated(request, key_digest(ended)))
