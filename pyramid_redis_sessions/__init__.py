"""Server-side sessions for Pyramid, stored in Redis.

Use it with ``config.include('pyramid_redis_sessions')`` and
``redis.sessions.*`` settings, or build a factory with
:func:`RedisSessionFactory` and pass it to ``config.set_session_factory``.
"""

from __future__ import annotations

from pyramid.config import Configurator

from .factory import (
    RedisSessionFactory,
    SessionFactory,
    session_factory_from_settings,
)
from .session import RedisSession

__all__ = [
    "RedisSession",
    "RedisSessionFactory",
    "SessionFactory",
    "includeme",
    "session_factory_from_settings",
]


def includeme(config: Configurator) -> None:
    """Set the application's session factory from its settings."""
    config.set_session_factory(session_factory_from_settings(config.get_settings()))
