"""The checked options of a session factory (:class:`SessionOptions`),
which everything below the factory reads: the session, the user index,
``psessions``. :mod:`.factory` builds them from the settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from pyramid.request import Request

from .cookies import CookieCodec
from .handles import Handles
from .legacy import RestrictedLoads
from .serializers import Serializer
from .store import RedisStore
from .values import FieldCodec

__all__ = ["SessionOptions"]


@dataclass(frozen=True, kw_only=True, eq=False)
class SessionOptions:
    """The checked options of a session factory, built once: what a
    session, the user index and ``psessions`` read. The factory itself is
    :class:`~pyramid_redis_sessions.SessionFactory`, which adds being
    called with a request."""

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
    #: Seconds between two slides of a session's expiry (``0``: every read).
    slide_interval: int = 0

    def store_for(self, request: Request) -> RedisStore:
        """The store a request uses; ``client_callable`` is asked here."""
        if self.store is not None:
            return self.store
        assert self.client_callable is not None
        client = self.client_callable(request, **self.redis_options)
        return RedisStore(client, self.prefix)
