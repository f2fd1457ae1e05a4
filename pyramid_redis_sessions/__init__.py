"""Server-side sessions for Pyramid, stored in Redis.

Use it with ``config.include('pyramid_redis_sessions')`` and
``redis.sessions.*`` settings, or build a factory with
:func:`RedisSessionFactory` and pass it to ``config.set_session_factory``.
"""

from __future__ import annotations

from pyramid.config import Configurator

from .exceptions import SessionStoreUnavailable
from .factory import (
    RedisSessionFactory,
    SessionFactory,
    session_factory_from_settings,
)
from .session import RedisSession
from .views import store_unavailable

__all__ = [
    "RedisSession",
    "RedisSessionFactory",
    "SessionFactory",
    "includeme",
    "session_factory_from_settings",
]


def includeme(config: Configurator) -> None:
    """Set the application's session factory from its settings, and answer
    :class:`~pyramid_redis_sessions.exceptions.SessionStoreUnavailable` with
    :func:`~pyramid_redis_sessions.views.store_unavailable` (a 503 with
    ``Retry-After``). To answer otherwise, register your own exception view
    for that exception: yours wins over the one included here.
    """
    config.set_session_factory(session_factory_from_settings(config.get_settings()))
    config.add_exception_view(store_unavailable, context=SessionStoreUnavailable)
