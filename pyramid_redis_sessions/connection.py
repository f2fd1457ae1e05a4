"""Deprecated: 1.x's ``get_default_connection``, for an old ``client_callable``.

1.x documented ``client_callable(request, **redis_options)`` in this module
and shipped the default it used, which applications wrapped to tweak the
client. It still works, with a :class:`DeprecationWarning`: it builds one
client from the keywords it is given and keeps it on ``request.registry``,
as 1.x did.

.. deprecated:: 2.0
   Without a ``client_callable``, the session factory builds one shared
   client at configuration from the ``redis.sessions.*`` settings (``url``,
   ``socket_timeout``, ...); a ``client_callable`` that needs something
   else should build and keep its own redis-py client.
"""

from __future__ import annotations

import warnings
from typing import Any

import redis
from pyramid.request import Request
from redis.backoff import NoBackoff
from redis.retry import Retry

from .exceptions import ConfigurationError

__all__ = ["get_default_connection"]

#: Where 1.x kept the client, so that code reading it there still finds it.
_REGISTRY_ATTRIBUTE = "_redis_sessions"
#: What the URL carries itself, and so 1.x dropped when given one.
_IN_THE_URL = ("host", "port", "db", "password", "unix_socket_path", "connection_pool")
#: 1.x passed these; redis-py 4 removed them.
_REMOVED = ("charset", "errors")
#: Options of this package that the factory passes a ``client_callable``
#: and a plain client has no keyword for: the retries are the client's
#: (none, see below); Sentinel and Cluster need clients of their own.
_NOT_CLIENT_KEYWORDS = ("retries",)
_TOPOLOGY = (
    "sentinels",
    "sentinel_service",
    "sentinel_username",
    "sentinel_password",
    "cluster",
)


def get_default_connection(
    request: Request,
    url: str | None = None,
    redis_client: type[redis.Redis] = redis.Redis,
    **redis_options: Any,
) -> redis.Redis:
    """The client 1.x's default connection handler gave: one per registry.

    ``request``
      The current request; the client is kept on its ``registry``.

    ``url``
      A ``redis://``, ``rediss://`` or ``unix://`` URL; when given, the
      host, port, db, password, socket path and pool options are ignored.
      Default: ``None``.

    ``redis_client``
      The client class. Default: :class:`redis.Redis` (1.x's
      ``StrictRedis``, which redis-py 3 made the same class).

    ``**redis_options``
      Keywords of ``redis_client``, such as the ones ``client_callable``
      receives. ``charset``, ``errors`` and ``retries`` are dropped; a
      Sentinel or Cluster setting is a
      :class:`~pyramid_redis_sessions.exceptions.ConfigurationError`: this
      function builds a plain client only.

    Unless given a ``retry``, the client does not retry failed commands
    (redis-py does by default), so that the socket timeouts bound how long a
    request waits for a dead server, as with the client the factory builds.

    .. deprecated:: 2.0
    """
    warnings.warn(
        "pyramid_redis_sessions.connection.get_default_connection is "
        "deprecated: without a client_callable the session factory builds one "
        "shared client from the redis.sessions.* settings; a client_callable "
        "should build and keep its own redis-py client",
        DeprecationWarning,
        stacklevel=2,
    )
    client: redis.Redis | None = getattr(request.registry, _REGISTRY_ATTRIBUTE, None)
    if client is not None:
        return client
    for name in (*_REMOVED, *_NOT_CLIENT_KEYWORDS):
        redis_options.pop(name, None)
    topology = [name for name in _TOPOLOGY if redis_options.pop(name, None)]
    if topology:
        raise ConfigurationError(
            f"get_default_connection builds a plain client; {', '.join(topology)} "
            "need the session factory's own client (leave client_callable unset)"
        )
    redis_options.setdefault("retry", Retry(NoBackoff(), 0))
    if url is not None:
        for name in _IN_THE_URL:
            redis_options.pop(name, None)
        client = redis_client.from_url(url, **redis_options)
    else:
        client = redis_client(**redis_options)
    setattr(request.registry, _REGISTRY_ATTRIBUTE, client)
    return client
